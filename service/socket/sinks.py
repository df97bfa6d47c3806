"""Where a subscriber's frames go: straight onto Daphne's transport, or through ASGI send.

Every frame to a client (messages, control frames, the close) goes through one sink, so
frames reach the client in the order the server produced them.
"""

import asyncio
import collections
import logging
import weakref

from service import metrics
from service.socket.frames import ControlFrame
from service.upstream import autobahn, daphne, twisted

log = logging.getLogger(__name__)


class DaphneSink:
    """Writes frames directly to the socket under Daphne's protocol (the fast path).

    Going to the protocol's transport skips an ASGI message, a coroutine and a UTF-8
    encode per frame, lets one pre-framed message go to every member, and shows how many
    bytes are waiting for the client (Daphne's own send never pushes back, so a slow
    client would otherwise buffer without bound).

    Frames written in one pass of the event loop are batched and sent once per
    connection at the end of the pass (Batches).
    """

    __slots__ = ("protocol", "transport", "batch", "batched")

    def __init__(self, protocol):
        self.protocol = protocol
        self.transport = protocol.transport
        self.batch = []
        self.batched = 0

    @property
    def open(self):
        return autobahn.is_open(self.protocol)

    @property
    def closed_with(self):
        """The code of a close the server started under us (autobahn's own)."""
        return autobahn.server_close_code(self.protocol)

    def pending(self):
        return self.batched + twisted.pending_bytes(self.transport)

    def write(self, frame):
        wire = frame.wire
        if not self.batch:
            _batches().add(self)
        self.batch.append(wire)
        self.batched += len(wire)

    def send_text(self, text):
        if self.open:
            self.write(ControlFrame(text))
            self.flush()

    def close(self, code, reason):
        if self.open:
            self.flush()
            autobahn.send_close(self.protocol, code, reason)

    def flush(self):
        if not self.batch:
            return
        data = self.batch[0] if len(self.batch) == 1 else b"".join(self.batch)
        self.batch.clear()
        self.batched = 0
        twisted.write(self.transport, data)


class Batches:
    """The sinks written to in this pass of the event loop, flushed together at its end."""

    def __init__(self, loop):
        self.loop = loop
        self.sinks = []
        self.scheduled = False

    def add(self, sink):
        self.sinks.append(sink)
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self):
        sinks, self.sinks = self.sinks, []
        self.scheduled = False
        for sink in sinks:
            sink.flush()


_batches_by_loop = weakref.WeakKeyDictionary()


def _batches():
    loop = asyncio.get_running_loop()
    batches = _batches_by_loop.get(loop)
    if batches is None:
        batches = _batches_by_loop[loop] = Batches(loop)
    return batches


class AsgiSink:
    """Sends frames through the ASGI `send` callable from one writer task, with the
    backlog counted in bytes (servers other than Daphne, and WebsocketCommunicator)."""

    closed_with = None  # every close goes through close() here, and is counted there

    def __init__(self, send):
        self.send = send
        self.backlog = collections.deque()
        self.bytes = 0
        self.open = True
        self.ready = asyncio.Event()
        self.writer = asyncio.ensure_future(self._write_backlog())

    def pending(self):
        return self.bytes

    def write(self, frame):
        self._queue({"type": "websocket.send", "text": frame.payload.decode()}, len(frame.payload))

    def send_text(self, text):
        if self.open:
            self._queue({"type": "websocket.send", "text": text}, len(text))

    def close(self, code, reason):
        if self.open:
            self.open = False
            self._queue({"type": "websocket.close", "code": code, "reason": reason}, 0)

    def _queue(self, message, size):
        self.backlog.append((message, size))
        self.bytes += size
        self.ready.set()

    async def _write_backlog(self):
        while True:
            await self.ready.wait()
            self.ready.clear()
            while self.backlog:
                message, size = self.backlog.popleft()
                self.bytes -= size
                await self.send(message)

    def stop(self):
        self.writer.cancel()


_warned = []


def sink_for(send):
    """The fastest sink that works for this connection's server, counted by kind."""
    protocol = daphne.websocket_protocol(send)
    if protocol is not None and daphne.direct_writes(protocol):
        metrics.CONNECTION_SINKS.labels("direct").inc()
        return DaphneSink(protocol)
    metrics.CONNECTION_SINKS.labels("asgi").inc()
    if protocol is not None and not _warned:
        # Under Daphne the slow path means an upstream change (or compression) broke
        # the fast path: say so once, the counter shows how often.
        _warned.append(True)
        log.warning("Daphne connection without the fast path: frames go through ASGI send")
    return AsgiSink(send)
