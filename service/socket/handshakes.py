"""Unfinished handshakes: every TCP connection to a socket process must become an open
WebSocket within GROUPCAST_HANDSHAKE_TIMEOUT seconds of being accepted (a client
trickling a byte at a time gains nothing), and at most
GROUPCAST_MAX_PENDING_HANDSHAKES connections may be on their way there at once.

Twisted's own HTTP timeout is reset by every byte received, so without this a client
could hold sockets open for ever before authenticating, until the process ran out of
file descriptors. Plain HTTP (probes, scrapes) is served within the same window.
"""

import collections
import logging
import weakref

from twisted.internet import reactor

from service import metrics
from service.upstream import autobahn, twisted

log = logging.getLogger(__name__)

# Transports serving a long-lived HTTP response (an SSE stream): established, not pending.
streaming = weakref.WeakSet()


class HandshakeGuard:
    """Wraps the server's HTTP factory: counts connections not yet open as WebSockets,
    refuses them past the limit, and drops them at the deadline."""

    def __init__(self, factory, *, timeout, limit):
        self.timeout = timeout
        self.limit = limit
        self.pending = set()
        # (deadline, channel) in the order they were accepted, so deadlines come in order
        # too: one timer, for the first, instead of a Twisted timer per connection (its
        # callLater was ~1.5% of the socket process's CPU in a connect storm).
        self.deadlines = collections.deque()
        self.timer = None
        self._build = factory.buildProtocol
        factory.buildProtocol = self.build

    def build(self, addr):
        """Called by Twisted for each accepted connection; None refuses it."""
        if len(self.pending) >= self.limit:
            self._prune()
            if len(self.pending) >= self.limit:
                metrics.HANDSHAKES_REFUSED.labels("over_limit").inc()
                return None
        channel = self._build(addr)
        if channel is not None:
            self.pending.add(channel)
            self.deadlines.append((reactor.seconds() + self.timeout, channel))
            if self.timer is None:
                self.timer = reactor.callLater(self.timeout, self._expire)
        return channel

    def _expire(self):
        """Called at the first deadline: every connection past its own is judged."""
        self.timer = None
        deadlines = self.deadlines
        now = reactor.seconds()
        while deadlines and deadlines[0][0] <= now:
            self._deadline(deadlines.popleft()[1])
        if deadlines:
            self.timer = reactor.callLater(deadlines[0][0] - now, self._expire)

    def _deadline(self, channel):
        self.pending.discard(channel)
        transport = twisted.channel_transport(channel)
        if transport is None or not transport.connected or self._open(transport):
            return
        metrics.HANDSHAKES_REFUSED.labels("timeout").inc()
        transport.abortConnection()

    def _prune(self):
        """Forget connections that opened or ended before their deadline."""
        for channel in list(self.pending):
            transport = twisted.channel_transport(channel)
            if transport is None or not transport.connected or self._open(transport):
                self.pending.discard(channel)

    @staticmethod
    def _open(transport):
        if transport in streaming:
            return True
        # after the upgrade, Daphne makes the WebSocket the transport's protocol
        protocol = transport.protocol
        return autobahn.is_protocol(protocol) and autobahn.is_open(protocol)
