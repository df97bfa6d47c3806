"""Daphne's server, with seams it does not offer (daphne 4.2.3, daphne/server.py).
"""

import asyncio
import functools

import daphne.server

from service.upstream import autobahn, twisted


class Server(daphne.server.Server):
    """Daphne's Server with the application's input queue as a class attribute."""

    input_queue_class = asyncio.Queue

    def create_application(self, protocol, scope):
        """Daphne's own (server.py, Server.create_application) with `input_queue_class`
        for the queue, and a WebSocket's HTTP upgrade channel let go.

        The HTTP channel that did the upgrade stays the transport's producer, keeping
        itself and its request (~2 kB) alive for the WebSocket's whole life.
        """
        assert "application_instance" not in self.connections[protocol]
        if scope["type"] == "websocket" and protocol.transport is not None:
            protocol.transport.unregisterProducer()
        input_queue = self.input_queue_class()
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
