"""Graceful drain of a socket process on SIGTERM.

At once: /readyz answers 503 and new connections are refused with 1012. Then every
open connection is closed with 1012 ("restarting: reconnect and resume with since"),
spread over GROUPCAST_DRAIN_SECONDS so that the clients do not all reconnect in the
same instant, and the process stops as soon as they are gone (or the window is over).
"""

import asyncio
import logging

from django.conf import settings

from service.socket.subscribers import RESTARTING

log = logging.getLogger(__name__)
BATCHES = 10


async def drain(hub):
    """Close every subscriber of `hub` with 1012, staggered over the drain window."""
    hub.draining = True
    subscribers = list(hub.subscribers.values())
    window = settings.GROUPCAST_DRAIN_SECONDS
    log.info("draining %d connections over %.1fs", len(subscribers), window)
    batch = max(1, -(-len(subscribers) // BATCHES))
    for start in range(0, len(subscribers), batch):
        for subscriber in subscribers[start : start + batch]:
            subscriber.close(RESTARTING, "server restarting, resume with since")
        if start + batch < len(subscribers):
            await asyncio.sleep(window / BATCHES)  # pace the reconnect wave
    # Give the last batch's close handshakes time to complete.
    deadline = asyncio.get_running_loop().time() + min(5.0, window + 1.0)
    while hub.subscribers and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    log.info("drain done, %d connections left", len(hub.subscribers))
