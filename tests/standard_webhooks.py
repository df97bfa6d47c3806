"""A receiver's check of Standard Webhooks signatures, written from the specification's text
(https://www.standardwebhooks.com/, "Verifying webhook authenticity") and not from
service/signing.py, so that the tests hold what groupcast sends against the specification:

- the signed content is `{msg_id}.{timestamp}.{payload}`, the raw body as sent;
- the symmetric secret is serialized as base64 behind `whsec_`; its bytes are the HMAC key;
- `webhook-signature` is a space-delimited list of `<version>,<base64 signature>`; a
  symmetric (HMAC-SHA256) one has version `v1`; one match is enough;
- compare in constant time, and refuse timestamps too far from now (replays).
"""

import base64
import hashlib
import hmac
import secrets
import time

TOLERANCE_SECONDS = 5 * 60


def new_secret():
    """A fresh secret in the specification's serialization (24 random bytes at least)."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def verify(secret, headers, body, now=None):
    """Raise AssertionError unless `headers` (names in lower case) carry a valid signature
    of `body` (bytes) by `secret`, made recently."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    assert msg_id and timestamp and signatures, f"a webhook-* header is missing: {headers}"
    assert "." not in msg_id and timestamp.isdigit(), "id and timestamp may hold no full stop"
    now = time.time() if now is None else now
    assert abs(now - int(timestamp)) <= TOLERANCE_SECONDS, f"stale timestamp {timestamp}"
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return
    raise AssertionError(f"no v1 signature in {signatures!r} matches the secret")
