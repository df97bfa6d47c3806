"""Where a subscriber's frames go: straight onto Daphne's transport, or through ASGI send.

Every frame to a client (messages, control frames, the close) goes through one sink, so
frames reach the client in the order the server produced them.
"""

import asyncio
import collections
import functools
import json
import logging
import weakref

from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol

from service.frames import message_frame

log = logging.getLogger(__name__)


class Frame:
    """One published message, serialised and framed once per process and then written
    to every local member."""

    __slots__ = ("group", "offset", "payload", "_wire", "_event")

    def __init__(self, group, offset, data_json):
        self.group = group
        self.offset = offset
        self.payload = message_frame(group, offset, data_json)
        self._wire = None
        self._event = None

    @property
    def wire(self):
        """The complete WebSocket frame (server frames are unmasked, so one fits all)."""
        if self._wire is None:
            self._wire = PreparedMessage(self.payload, False, False, True).payloadHybi
        return self._wire

    @property
    def event(self):
        """The message as a Channels event, for plain channels in the group."""
        if self._event is None:
            self._event = {
                "type": "groupcast.message",
                "group": self.group,
                "offset": self.offset,
                "data": json.loads(self.payload)["data"],
            }
        return self._event


class DaphneSink:
    """Writes frames directly to the socket under Daphne's protocol.

    Daphne hands every application `send = partial(server.handle_reply, protocol)`.
    Going to that protocol's transport skips an ASGI message, a coroutine and a UTF-8
    encode per frame, lets one pre-framed message go to every member, and shows how many
    bytes are waiting for the client (Daphne's own send never pushes back, so a slow
    client would otherwise buffer without bound).

    Frames written in one pass of the event loop are batched and sent once per
    connection at the end of the pass (Batches), straight to the socket when Twisted has
    nothing queued: one send() instead of Twisted's register-for-writing, wait a pass,
    send, unregister per frame.
    """

    __slots__ = ("protocol", "transport", "socket", "batch", "batched")

    def __init__(self, protocol):
        self.protocol = protocol
        self.transport = protocol.transport
        self.socket = protocol.transport.socket
        self.batch = []
        self.batched = 0

    @property
    def open(self):
        return self.protocol.state == WebSocketProtocol.STATE_OPEN

    @property
    def closed_with(self):
        """The code of a close the server started under us (autobahn's own, such as 1009
        for a frame over the size limit), which Daphne reports as the client's 1006."""
        protocol = self.protocol
        return protocol.localCloseCode if protocol.closedByMe else None

    def pending(self):
        transport = self.transport
        return self.batched + transport._tempDataLen + len(transport.dataBuffer) - transport.offset

    def write(self, frame):
        wire = frame.wire
        if not self.batch:
            _batches().add(self)
        self.batch.append(wire)
        self.batched += len(wire)

    def send_text(self, text):
        if self.open:
            self.write(_ControlFrame(text))
            self.flush()

    def close(self, code, reason):
        # sendCloseFrame, because autobahn's sendClose refuses 1009, 1012 and 1013.
        if self.open:
            self.flush()
            self.protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode()[:123])

    def flush(self):
        if not self.batch:
            return
        data = self.batch[0] if len(self.batch) == 1 else b"".join(self.batch)
        self.batch.clear()
        self.batched = 0
        transport = self.transport
        if not transport.connected or transport.disconnecting:
            return
        if transport._tempDataLen == 0 and len(transport.dataBuffer) == transport.offset:
            # Nothing queued in Twisted: try the socket first, queue only what it refuses.
            try:
                sent = self.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                return  # the connection is going; Twisted reports it on its own
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)


class _ControlFrame:
    """A protocol frame (subscribed, error, pong) sent through the same batch as messages."""

    __slots__ = ("wire",)

    def __init__(self, text):
        self.wire = PreparedMessage(text.encode(), False, False, True).payloadHybi


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


def _daphne_protocol(send):
    if isinstance(send, functools.partial) and send.args:
        protocol = send.args[0]
        if (
            isinstance(protocol, WebSocketProtocol)
            and protocol._perMessageCompress is None
            and hasattr(protocol.transport, "_tempDataLen")
            and hasattr(protocol.transport, "socket")
        ):
            return protocol
    return None


def sink_for(send):
    """The fastest sink that works for this connection's server."""
    protocol = _daphne_protocol(send)
    if protocol is not None:
        return DaphneSink(protocol)
    return AsgiSink(send)
