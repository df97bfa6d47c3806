"""The webhook: connection events POSTed to GROUPCAST_WEBHOOK_URL."""

import json
import urllib.request

from django.conf import settings


def webhook_deliver(events):
    """POST a batch of events to GROUPCAST_WEBHOOK_URL (called in a worker thread)."""
    body = json.dumps({"events": events}).encode()
    request = urllib.request.Request(
        settings.GROUPCAST_WEBHOOK_URL,
        data=body,
        headers={"Content-Type": "application/json", "User-Agent": "groupcast"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        response.read()
