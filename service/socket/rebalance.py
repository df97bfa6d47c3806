"""Rebalancing after a scale-up: long-lived connections stay where they landed, so after
new socket pods start, the old ones stay near their limit while the new ones idle.

After each presence heartbeat, a process compares its connections with the fleet's mean
(every live process reports its count on its heartbeat). Above the mean by more than
GROUPCAST_REBALANCE_TOLERANCE, it closes its excess with 1012 — oldest first, at
GROUPCAST_REBALANCE_RATE a second, at most a quarter of its connections per heartbeat — and
the clients reconnect through the Service (landing anywhere) and resume by offset.
Optionally, GROUPCAST_MAX_CONNECTION_AGE (jittered by ±10%) recycles connections that a
proxy would otherwise pin to one pod for ever.
"""

import asyncio
import logging
import math
import time
import zlib

from django.conf import settings

from service import metrics
from service.socket.subscribers import RESTARTING

log = logging.getLogger(__name__)

# never more than this share of a process's connections closed in one heartbeat
MOST_PER_BEAT = 0.25


def excess(own, fleet):
    """How many of `own` connections to move, given every live process's count."""
    if not fleet or own <= 0:
        return 0
    mean = sum(fleet) / len(fleet)
    if own <= mean * (1 + settings.GROUPCAST_REBALANCE_TOLERANCE):
        return 0
    return min(own - math.ceil(mean), max(1, int(own * MOST_PER_BEAT)))


class Rebalancer:
    def __init__(self, hub):
        self.hub = hub
        self.running = None

    async def after_beat(self):
        """Called after each presence heartbeat."""
        if self.running is not None and not self.running.done():
            return  # the last round is still closing
        victims = self._aged()
        if settings.GROUPCAST_REBALANCE and not self.hub.draining:
            own = len(self.hub.subscribers)
            count = excess(own, await self.hub.presence.fleet())
            oldest = [s for s in self.hub.subscribers.values() if not s.closing and s not in victims]
            victims += oldest[:count]
        if victims:
            self.running = asyncio.ensure_future(self._close(victims))

    def _aged(self):
        limit = settings.GROUPCAST_MAX_CONNECTION_AGE
        if not limit:
            return []
        now = time.monotonic()
        return [s for s in self.hub.subscribers.values()
                if not s.closing and now - s.connected_at > limit * age_jitter(s)]

    async def _close(self, victims):
        pace = 1 / settings.GROUPCAST_REBALANCE_RATE
        log.info("rebalancing: moving %d connections", len(victims))
        for subscriber in victims:
            if self.hub.draining:
                return  # the drain closes everything now
            if not subscriber.closing:
                subscriber.close(RESTARTING, "rebalancing: reconnect and resume with since")
                metrics.REBALANCED.inc()
            await asyncio.sleep(pace)  # the rate limit: spread the reconnects


def age_jitter(subscriber):
    """Each connection's share of GROUPCAST_MAX_CONNECTION_AGE, 0.9-1.1 and fixed per
    connection, so a fleet's connections do not all come of age at once."""
    return 0.9 + zlib.crc32(subscriber.channel_name.encode()) % 2001 / 10000
