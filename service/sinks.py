"""Where a subscriber's frames go: straight onto Daphne's transport, or through ASGI send.

Every frame to a client (messages, control frames, the close) goes through one sink, so
frames reach the client in the order the server produced them.
"""

import asyncio
import json
import collections
import functools
import logging

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
    """Writes frames directly to the Twisted transport under Daphne's protocol.

    Daphne hands every application `send = partial(server.handle_reply, protocol)`.
    Writing to that protocol's transport skips an ASGI message, a coroutine and a UTF-8
    encode per frame, lets one pre-framed message go to every member, and shows how many
    bytes are waiting for the client: Daphne's own send never pushes back, so without
    this a slow client would buffer without bound.
    """

    __slots__ = ("protocol", "transport")

    def __init__(self, protocol):
        self.protocol = protocol
        self.transport = protocol.transport

    @property
    def open(self):
        return self.protocol.state == WebSocketProtocol.STATE_OPEN

    def pending(self):
        transport = self.transport
        return transport._tempDataLen + len(transport.dataBuffer) - transport.offset

    def write(self, frame):
        self.transport.write(frame.wire)

    def send_text(self, text):
        if self.open:
            self.protocol.sendMessage(text.encode(), False)

    def close(self, code, reason):
        # sendCloseFrame, because autobahn's sendClose refuses 1009, 1012 and 1013.
        if self.open:
            self.protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode()[:123])


class AsgiSink:
    """Sends frames through the ASGI `send` callable from one writer task, with the
    backlog counted in bytes (servers other than Daphne, and WebsocketCommunicator)."""

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
        ):
            return protocol
    return None


def sink_for(send):
    """The fastest sink that works for this connection's server."""
    protocol = _daphne_protocol(send)
    if protocol is not None:
        return DaphneSink(protocol)
    return AsgiSink(send)
