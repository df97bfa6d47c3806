"""The socket role: Daphne, with a graceful drain on SIGTERM.

    python -m service.socket_server --bind 0.0.0.0 --port 8001 service.asgi:application

Takes every Daphne option. The differences from plain `daphne`: SIGTERM and SIGINT
start a drain (service/drain.py) instead of stopping the reactor at once, a second
signal stops at once, and WebSocket limits come from the groupcast settings.
"""

import asyncio
import logging
import signal
import sys
from functools import partial

from daphne.cli import CommandLineInterface
from daphne.server import Server
from twisted.internet import reactor

from service.mailbox import Mailbox

log = logging.getLogger("service.socket_server")
# How long a client has to answer our close frame before the TCP connection is dropped;
# autobahn's 1s default would cut off a slow client before it reads its 4008.
CLOSE_HANDSHAKE_TIMEOUT = 5


class SocketServer(Server):
    def __init__(self, *args, **kwargs):
        from django.conf import settings

        kwargs["signal_handlers"] = False
        kwargs["websocket_max_message_size"] = settings.GROUPCAST_MAX_FRAME_BYTES
        kwargs["websocket_max_frame_size"] = settings.GROUPCAST_MAX_FRAME_BYTES
        super().__init__(*args, **kwargs)
        self.draining = None

    def create_application(self, protocol, scope):
        """Daphne's own (daphne 4.2.3, server.py), with a Mailbox for the application's
        input queue instead of an asyncio.Queue: ~3 kB less per open connection."""
        assert "application_instance" not in self.connections[protocol]
        if scope["type"] == "websocket" and protocol.transport is not None:
            # The HTTP channel that did the upgrade stays the transport's producer, keeping
            # itself and its request (~2 kB) alive for the WebSocket's whole life.
            protocol.transport.unregisterProducer()
        input_queue = Mailbox()
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope,
            receive=input_queue.get,
            send=partial(self.handle_reply, protocol),
        )
        if protocol not in self.connections:
            return None
        self.connections[protocol]["application_instance"] = asyncio.ensure_future(application_instance)
        return input_queue

    def run(self):
        reactor.callWhenRunning(self._started)
        super().run()

    def _started(self):
        # failByDrop=False: when autobahn itself fails a connection (a frame over the size
        # limit, a protocol error) the client gets the close code (1009, 1002), not a
        # dropped TCP connection it cannot tell from a crash.
        self.ws_factory.setProtocolOptions(closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT, failByDrop=False)
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum):
        if self.draining is not None:
            log.info("second signal: stopping now")
            self.stop()
            return
        log.info("received %s: draining", signal.Signals(signum).name)
        self.draining = asyncio.ensure_future(self._drain_then_stop())

    async def _drain_then_stop(self):
        from channels.layers import get_channel_layer

        from service.drain import drain

        layer = get_channel_layer()
        try:
            await drain(layer)
            await layer.close_pools()
        finally:
            self.stop()


class SocketCommandLineInterface(CommandLineInterface):
    server_class = SocketServer


def main():
    SocketCommandLineInterface().run(sys.argv[1:])


if __name__ == "__main__":
    main()
