"""Connection events: socket processes report connect/subscribe/unsubscribe/disconnect
to the `groupcast.events` channel, where a worker hands them to an optional webhook
(service/worker/webhook.py).

Events are batched (one channel message per batch) so a burst of handshakes costs a
few Redis writes, not one each. They are best effort and counted: a full channel (no
worker running) drops the batch and counts it, and never slows a client down.

Without GROUPCAST_WEBHOOK_URL nothing takes them (a worker would count each batch and
drop it), so none are sent: a reconnect storm of 10,000 clients was 20,000 events through
Redis and a worker for nothing, a tenth of the server CPU per connect.
"""

import asyncio
import logging
import time

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from django.conf import settings

from service import metrics

log = logging.getLogger(__name__)

CHANNEL = "groupcast.events"
BATCH = 500
FLUSH_SECONDS = 0.2


class EventEmitter:
    """Collects this process's events and sends them in batches."""

    def __init__(self):
        self.pending = []
        self.task = None

    def emit(self, kind, **fields):
        if not settings.GROUPCAST_WEBHOOK_URL:
            return
        self.pending.append({"event": kind, "at": time.time(), **fields})
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._send_soon())

    async def _send_soon(self):
        await asyncio.sleep(FLUSH_SECONDS)  # gather a batch
        layer = get_channel_layer()
        while self.pending:
            batch, self.pending = self.pending[:BATCH], self.pending[BATCH:]
            try:
                await layer.send(CHANNEL, {"type": "groupcast.events", "events": batch})
                metrics.EVENTS.labels("sent").inc(len(batch))
            except ChannelFull:
                metrics.EVENTS.labels("dropped").inc(len(batch))
            except Exception as error:
                metrics.EVENTS.labels("dropped").inc(len(batch))
                log.warning("could not queue %d events: %s", len(batch), error)


_emitter = EventEmitter()


def emit(kind, **fields):
    _emitter.emit(kind, **fields)
