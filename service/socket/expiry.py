"""Token expiry for open connections: a client hears `expiring` about EXPIRING_NOTICE
seconds before its token's `exp`, and is closed with 4001 at `exp` (plus the clock-skew
leeway) unless it refreshed it meanwhile.

One ticker per process and buckets by second, rather than two timers per connection: a
refresh simply schedules anew, and stale entries are recognised by their `exp`.
"""

import asyncio
import math
import time

from django.conf import settings

from service.socket import frames
from service.socket.subscribers import BAD_TOKEN

EXPIRING_NOTICE = 30


class Expiries:
    def __init__(self):
        self.buckets = {}  # whole second -> [(subscriber, exp, closing?)]
        self.swept_to = math.floor(time.time())
        self.task = None

    def start(self):
        self.task = asyncio.ensure_future(self._tick())

    def stop(self):
        if self.task is not None:
            self.task.cancel()

    def schedule(self, subscriber):
        """Note the subscriber's current token's expiry (again, after a refresh)."""
        exp = subscriber.claims.exp
        self._add(exp - EXPIRING_NOTICE, (subscriber, exp, False))
        self._add(exp + settings.GROUPCAST_JWT_LEEWAY, (subscriber, exp, True))

    def _add(self, when, entry):
        second = max(math.floor(when), self.swept_to + 1)
        self.buckets.setdefault(second, []).append(entry)

    async def _tick(self):
        while True:
            await asyncio.sleep(1.0)  # the ticker's period: expiry to the second
            now = math.floor(time.time())
            for second in range(self.swept_to + 1, now + 1):
                for subscriber, exp, closing in self.buckets.pop(second, ()):
                    self._due(subscriber, exp, closing)
            self.swept_to = max(self.swept_to, now)

    @staticmethod
    def _due(subscriber, exp, closing):
        if subscriber.closing or subscriber.claims is None or subscriber.claims.exp != exp:
            return  # gone, or refreshed since
        if closing:
            subscriber.send_error("token_expired", "the token expired; connect again with a new one")
            subscriber.close(BAD_TOKEN, "token expired")
        else:
            subscriber.send(frames.expiring_frame(exp - time.time()))
