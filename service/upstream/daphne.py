"""Daphne's server, with seams it does not offer (daphne 4.2.3, daphne/server.py).
"""

import asyncio
import functools
from http import HTTPStatus

import daphne.http_protocol
import daphne.server
from autobahn.websocket.types import ConnectionDeny

from service.upstream import autobahn, twisted


class Server(daphne.server.Server):
    """Daphne's Server with the application's input queue made by `input_queue()`."""

    def input_queue(self, protocol, scope):
        """The queue a new application instance reads its events from."""
        return asyncio.Queue()

    def create_application(self, protocol, scope):
        """Daphne's own (server.py, Server.create_application) with `input_queue()` for
        the queue, and a WebSocket's HTTP upgrade channel let go.

        The HTTP channel that did the upgrade stays the transport's producer, keeping
        itself and its request (~2 kB) alive for the WebSocket's whole life.
        """
        assert "application_instance" not in self.connections[protocol]
        if scope["type"] == "websocket" and protocol.transport is not None:
            protocol.transport.unregisterProducer()
        input_queue = self.input_queue(protocol, scope)
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope,
            receive=input_queue.get,
            send=functools.partial(self.handle_reply, protocol),
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(application_instance)
        return input_queue


    async def handle_reply(self, protocol, message):
        """Daphne's own (server.py, Server.handle_reply) plus ASGI's WebSocket Denial
        Response: `websocket.http.response.start` before accepting refuses the handshake
        with that status (Daphne's ws_protocol.py serverReject knows only 403)."""
        kind = message.get("type")
        if kind == "websocket.http.response.start" and autobahn.is_protocol(protocol):
            if protocol.state == protocol.STATE_CONNECTING and hasattr(protocol, "handshake_deferred"):
                deferred = protocol.handshake_deferred
                del protocol.handshake_deferred
                status = message["status"]
                deferred.errback(ConnectionDeny(code=status, reason=HTTPStatus(status).phrase))
                self.protocol_disconnected(protocol)
            return
        if kind == "websocket.http.response.body":
            return  # autobahn writes the refusal's body itself
        await super().handle_reply(protocol, message)
        if kind == "websocket.accept" and autobahn.is_protocol(protocol):
            forget_handshake(protocol)


class _Path:
    """What Daphne's WebSocket protocol still reads of its request once open (its path,
    for the access log)."""

    __slots__ = ("path",)

    def __init__(self, path):
        self.path = path


def forget_handshake(protocol):
    """Once a WebSocket is open, let go of its handshake: the request with its headers
    and parameters (Daphne's `request`, `clean_headers` — the list the ASGI scope's
    `headers` is — and autobahn's copies), ~4 kB of every idle connection otherwise. The
    application read what it needed from the scope during `connect`."""
    request = getattr(protocol, "request", None)
    if request is not None:
        protocol.request = _Path(request.path)
    headers = getattr(protocol, "clean_headers", None)
    if headers is not None:
        headers.clear()
    autobahn.forget_handshake(protocol)


def open_websocket(server, transport, head, query_string):
    """What Daphne's WebRequest.process does with a WebSocket upgrade (http_protocol.py),
    without the HTTP request it parsed first: a protocol from the server's WebSocket
    factory, given the query string, the transport and the request's head to parse.
    False, with nothing done, when the factory builds no protocol."""
    protocol = server.ws_factory.buildProtocol(transport.getPeer())
    if protocol is None:
        return False
    protocol._raw_query_string = query_string
    twisted.hand_over(transport, protocol)
    protocol.dataReceived(head)
    return True


def websocket_protocol(send):
    """The autobahn protocol behind an ASGI `send` when Daphne serves the connection,
    else None. Daphne hands every application `send = partial(server.handle_reply, protocol)`.
    """
    if isinstance(send, functools.partial) and send.args and autobahn.is_protocol(send.args[0]):
        return send.args[0]
    return None


def direct_writes(protocol):
    """True when frames can be written to the protocol's transport as they are: no
    compression negotiated, and the transport has the fields the fast path reads."""
    return autobahn.uncompressed(protocol) and twisted.supported(protocol.transport)


def http_request(send):
    """Daphne's WebRequest behind an ASGI `send` of an HTTP scope, else None (its
    `transport` is the connection's; SSE measures what waits there)."""
    if isinstance(send, functools.partial) and send.args:
        request = send.args[0]
        if isinstance(request, daphne.http_protocol.WebRequest):
            return request
    return None
