"""Where a subscriber's frames go: straight onto Daphne's transport, or through ASGI send.

Every frame to a client (messages, control frames, the close) goes through one sink, so
frames reach the client in the order the server produced them.
"""

import asyncio
import collections
import json
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

    __slots__ = ("protocol", "transport", "batch", "batched", "batches")

    def __init__(self, protocol):
        self.protocol = protocol
        self.transport = protocol.transport
        self.batch = []
        self.batched = 0
        # the event loop's Batches, looked up once: per delivery the lookup (running loop,
        # weak dictionary) was 6% of a socket process fanning out to groups of 10 (py-spy)
        self.batches = _batches()

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
            self.batches.add(self)
        self.batch.append(wire)
        self.batched += len(wire)

    def write_burst(self, burst):
        if not self.batch:
            self.batches.add(self)
        self.batch.extend(burst.wires)
        self.batched += burst.size

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
    """The sinks written to in this pass of the event loop, flushed together at its end;
    before that, the writers that hold their writes until the end of the pass (the
    fan-out's bursts) write theirs. One callback a pass for both."""

    def __init__(self, loop):
        self.loop = loop
        self.sinks = []
        self.writers = []
        self.scheduled = False

    def add(self, sink):
        self.sinks.append(sink)
        self._flush_at_end()

    def write_at_end(self, writer):
        """Call `writer()` at the end of this pass, before the sinks are flushed."""
        self.writers.append(writer)
        self._flush_at_end()

    def _flush_at_end(self):
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.flush)

    def flush(self):
        writers, self.writers = self.writers, []
        try:
            for writer in writers:
                writer()
        finally:
            # whatever a writer raised, what the pass wrote goes out and the next pass
            # is flushed too
            sinks, self.sinks = self.sinks, []
            self.scheduled = False
            for sink in sinks:
                sink.flush()


_batches_by_loop = weakref.WeakKeyDictionary()


def write_at_end_of_pass(writer):
    """Have `writer()` called at the end of this pass of the running loop, its writes sent
    with every other write of the pass."""
    _batches().write_at_end(writer)


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

    def write_burst(self, burst):
        for frame in burst.frames:
            self.write(frame)

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


class SseSink:
    """Writes a subscriber's frames as a Server-Sent Events stream through ASGI send.

    Every message's `id` is the stream's cursor: every group's offset so far, so a
    browser's automatic reconnect (Last-Event-ID) resumes all of its groups. Nothing is
    sent before every group has answered `subscribed`: then one `subscribed` event with
    all their offsets, then what waited. What waits for the client counts bytes queued
    here and, under Daphne, in its transport.
    """

    closed_with = None

    def __init__(self, send, groups, encode_cursor):
        self.send = send
        self.waiting_for = set(groups)
        self.offsets = {}
        self.encode_cursor = encode_cursor
        self.held = []  # events before every group was subscribed
        self.chunks = []
        self.bytes = 0
        self.open = True
        self.ready = asyncio.Event()
        request = daphne.http_request(send)
        self.transport = request.transport if request is not None and twisted.supported(request.transport) else None
        self.writer = asyncio.ensure_future(self._write())

    def pending(self):
        waiting = self.bytes
        if self.transport is not None:
            waiting += twisted.pending_bytes(self.transport)
        return waiting

    def write(self, frame):
        self.offsets[frame.group] = frame.offset
        self._event(b"id: %s\nevent: message\ndata: %s\n\n" % (self.cursor(), frame.sse_data))

    def write_burst(self, burst):
        for frame in burst.frames:
            self.write(frame)

    def send_text(self, text):
        """Control frames the hub sends a subscriber, as SSE events."""
        body = json.loads(text)
        if body.get("type") == "subscribed":
            self.offsets[body["group"]] = body["offset"]
            self.waiting_for.discard(body["group"])
            if not self.waiting_for and self.held is not None:
                data = json.dumps({"groups": self.offsets}, separators=(",", ":")).encode()
                self._queue(b"id: %s\nevent: subscribed\ndata: %s\n\n" % (self.cursor(), data))
                for event in self.held:
                    self._queue(event)
                self.held = None
        elif body.get("type") == "error":
            self._event(b"event: error\ndata: %s\n\n" % text.encode())

    def comment(self):
        """A comment line, so that proxies see traffic on an idle stream."""
        self._queue(b": keepalive\n\n")

    def close(self, code, reason):
        if self.open:
            data = json.dumps({"code": code, "reason": reason}, separators=(",", ":")).encode()
            self.held = None
            self._queue(b"event: close\ndata: %s\n\n" % data)
            self.open = False
            self.ready.set()

    def cursor(self):
        return self.encode_cursor(self.offsets).encode()

    def _event(self, event):
        if self.held is not None:
            self.held.append(event)
            self.bytes += len(event)
        else:
            self._queue(event)

    def _queue(self, chunk):
        if self.open:
            self.chunks.append(chunk)
            self.bytes += len(chunk)
            self.ready.set()

    async def _write(self):
        while True:
            await self.ready.wait()
            self.ready.clear()
            if self.chunks:
                # everything queued since the last write, in one body chunk
                body, self.chunks = b"".join(self.chunks), []
                self.bytes -= len(body)
                await self.send({"type": "http.response.body", "body": body, "more_body": self.open})
            elif not self.open:
                await self.send({"type": "http.response.body", "body": b"", "more_body": False})
            if not self.open:
                return

    async def ended(self):
        """Wait until the stream's last bytes were handed to the server."""
        await asyncio.shield(self.writer)

    def stop(self):
        self.writer.cancel()


_warned = []


def sink_for(send):
    """The fastest sink that works for this connection's server, counted by kind."""
    protocol = daphne.websocket_protocol(send)
    if protocol is not None and daphne.direct_writes(protocol):
        metrics.labelled(metrics.CONNECTION_SINKS, "direct").inc()
        return DaphneSink(protocol)
    metrics.CONNECTION_SINKS.labels("asgi").inc()
    if protocol is not None and not _warned:
        # Under Daphne the slow path means an upstream change (or compression) broke
        # the fast path: say so once, the counter shows how often.
        _warned.append(True)
        log.warning("Daphne connection without the fast path: frames go through ASGI send")
    return AsgiSink(send)
