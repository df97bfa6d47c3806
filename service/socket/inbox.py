"""A WebSocket's input queue under Daphne: frames are bounded as they arrive.

Daphne hands every frame to the application's queue the moment autobahn parses it, and
the consumer takes them one by one, each maybe a Redis round trip. A client writing
faster than that would have the process buffer its frames without bound. Here each
frame spends from the client's rate (GROUPCAST_CLIENT_RATE, bursts of twice that) on
arrival; a client over it has its further frames dropped and is closed with 4008 by its
consumer, in order behind what it sent before. And while INBOX_HIGH frames wait to be
processed, the connection's socket is not read (TCP pushes back on the client) until
they are down to INBOX_LOW.
"""

import time

from service import metrics
from service.socket.mailbox import Mailbox

INBOX_HIGH = 16
INBOX_LOW = 4
# the event the consumer gets, in order, when its client went over its rate
FLOODED = {"type": "groupcast.flooded"}


class ClientInbox(Mailbox):
    __slots__ = ("transport", "rate", "tokens", "refilled", "waiting", "paused", "flooded")

    def __init__(self, transport, rate):
        super().__init__()
        self.transport = transport
        self.rate = rate
        self.tokens = 2 * rate
        self.refilled = time.monotonic()
        self.waiting = 0
        self.paused = False
        self.flooded = False

    def put_nowait(self, message):
        if message["type"] == "websocket.receive":
            if self.flooded:
                metrics.DROPPED_FRAMES.inc()
                return
            if not self._spend():
                self.flooded = True
                metrics.DROPPED_FRAMES.inc()
                message = FLOODED
            else:
                self.waiting += 1
                if self.waiting >= INBOX_HIGH and not self.paused:
                    self.paused = True
                    self.transport.pauseProducing()
        super().put_nowait(message)

    async def get(self):
        message = await super().get()
        if message["type"] == "websocket.receive":
            self.waiting -= 1
            if self.paused and self.waiting <= INBOX_LOW:
                self.paused = False
                self.transport.resumeProducing()
        return message

    def _spend(self):
        now = time.monotonic()
        self.tokens = min(2 * self.rate, self.tokens + (now - self.refilled) * self.rate)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
