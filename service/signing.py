"""Standard Webhooks signatures (https://www.standardwebhooks.com/): the headers that let a
receiver check that a request comes from this deployment, unaltered and recent.

The webhook (service/worker/webhook.py) and the subscribe proxy
(service/socket/subscribe_proxy.py) sign with GROUPCAST_WEBHOOK_SECRET, so receivers can
use any of the specification's libraries. The signed content is
`<webhook-id>.<webhook-timestamp>.<body>`. The timestamp is that of the attempt, so that
receivers can refuse stale ones (replays); the id stays the same across the retries of one
delivery, so that they can drop duplicates.

Every configured secret signs, the first one first: the header is the specification's
space-separated list, so during a rotation a receiver that holds either the old or the new
secret finds a signature it can check.
"""

import base64
import hashlib
import hmac
import time
import uuid

from django.conf import settings


def new_message_id():
    return f"msg_{uuid.uuid4().hex}"


def signature(key, message_id, timestamp, body):
    """`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">` for one key (bytes)."""
    content = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def signed_headers(body, message_id, now=None):
    """The three webhook-* headers for a request carrying `body` (bytes)."""
    timestamp = int(time.time() if now is None else now)
    signatures = (signature(key, message_id, timestamp, body) for key in settings.GROUPCAST_WEBHOOK_SECRETS)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signatures),
    }
