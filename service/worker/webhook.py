"""The webhook: batches of connection events POSTed to GROUPCAST_WEBHOOK_URL, signed.

Each batch becomes a job of kind `webhook` (recorded by EventsConsumer before anything is
attempted), which workers run like any job: under a lease, retried with backoff up to
GROUPCAST_JOB_MAX_ATTEMPTS, taken over by another worker if this one dies. One run is one
attempt. Every attempt carries the same `webhook-id` (`msg_<job id>`), so a receiver can
drop a batch it already has: an attempt cut off by a dying worker may have arrived.

A 2xx answer delivers the batch. A 4xx other than 408 and 429 says the receiver will not
take it, so it is not sent again; anything else (other statuses, redirects, timeouts,
refused or reset connections) is tried again.
"""

import asyncio
import json
import urllib.error
import urllib.request

from django.conf import settings

from service import metrics
from service.signing import signed_headers

# The lower end of what the specification recommends: time enough for a receiver to take
# a batch, while a worker slot waits for it.
TIMEOUT = 15
# 4xx answers that ask for the request again later instead of refusing it.
RETRYABLE_4XX = {408, 429}
# A run's outcome (service/worker/jobs.py) as a delivery outcome.
OUTCOMES = {"done": "delivered", "retried": "retried", "rejected": "rejected", "failed": "failed"}


class Rejected(Exception):
    """The receiver refused the batch (a 4xx): sending it again cannot help."""

    final = True


def webhook_body(events):
    """The request body of a batch, as JSON text (what is signed and stored)."""
    return json.dumps({"events": events}, separators=(",", ":"))


def message_id(job_id):
    return f"msg_{job_id}"


async def webhook_run(job_id, record, progress):
    """One delivery attempt of a webhook job (the job runner's `run`)."""
    status = await asyncio.to_thread(webhook_post, record["body"].encode(), message_id(job_id))
    return {"status": status}


def webhook_count(outcome, record, seconds):
    """Count a run's outcome (the job runner's `count`); a lost run is counted by the worker
    that took the job over."""
    delivery = OUTCOMES.get(outcome)
    if delivery is None:
        return
    metrics.WEBHOOK_DELIVERIES.labels(delivery).inc()
    events = int(record.get("events") or 0)
    if delivery == "delivered":
        metrics.EVENTS.labels("delivered").inc(events)
    elif delivery in ("rejected", "failed"):
        metrics.EVENTS.labels("webhook_failed").inc(events)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failed attempt: urllib would re-send a POST as a GET without its body."""

    def redirect_request(self, *args, **kwargs):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def webhook_post(body, msg_id):
    """POST one signed attempt (in a worker thread); the status of a 2xx answer, else raise."""
    request = urllib.request.Request(
        settings.GROUPCAST_WEBHOOK_URL,
        data=body,
        headers={"Content-Type": "application/json", "User-Agent": "groupcast", **signed_headers(body, msg_id)},
        method="POST",
    )
    try:
        with _opener.open(request, timeout=TIMEOUT) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        error.close()
        if 400 <= error.code < 500 and error.code not in RETRYABLE_4XX:
            raise Rejected(f"the receiver answered {error.code}") from None
        raise
