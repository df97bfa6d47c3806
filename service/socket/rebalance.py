"""Rebalancing after a scale-up: long-lived connections stay where they landed, so after
new socket pods start, the old ones stay near their limit while the new ones idle.

After each presence heartbeat, a process compares its connections with the fleet's mean
(every live process reports its count on its heartbeat). Above the mean by more than
GROUPCAST_REBALANCE_TOLERANCE, or above it at all while another process is below it by
more than the tolerance, it closes its excess over the mean with 1012 — oldest first, at
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
    """How many of `own` connections to move, given every live process's count.

    A process over the mean by more than the tolerance moves down to the mean; so does
    any process over the mean while another is under it by more than the tolerance. The
    second rule is what fills a new pod: clients land wherever the Service sends them, so
    with only the first, a fleet could settle with one pod at the top of the tolerance
    and another far below the mean (seen in e2e: 120, 107 and 73 around a mean of 100)."""
    if not fleet or own <= 0:
        return 0
    mean = sum(fleet) / len(fleet)
    tolerance = settings.GROUPCAST_REBALANCE_TOLERANCE
    over = own > mean * (1 + tolerance)
    starved = own > mean and min(fleet) < mean * (1 - tolerance)
    if not (over or starved):
        return 0
    return max(0, min(own - math.ceil(mean), max(1, int(own * MOST_PER_BEAT))))


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
            if count:  # (a list of every connection on every beat otherwise)
                aged = set(victims)
                oldest = [s for s in self.hub.subscribers.values() if not s.closing and s not in aged]
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
