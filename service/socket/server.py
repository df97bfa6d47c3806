"""The socket role: Daphne, with a graceful drain on SIGTERM.

    python -m service.socket.server --bind 0.0.0.0 --port 8001 service.asgi:application

Takes every Daphne option. The differences from plain `daphne`: SIGTERM and SIGINT
start a drain (service/socket/drain.py) instead of stopping the reactor at once, a
second signal stops at once, WebSocket limits come from the groupcast settings, and
each connection's input queue is a Mailbox.
"""

import asyncio
import logging
import signal
import sys

from daphne.cli import CommandLineInterface
from twisted.internet import reactor

from service.collector import collect_less
from service.socket.handshakes import HandshakeGuard
from service.socket.inbox import ClientInbox
from service.socket.mailbox import Mailbox
from service.socket.upgrades import direct_upgrades
from service.storage.clients import startup_check
from service.upstream import autobahn, daphne

log = logging.getLogger(__name__)


class SocketServer(daphne.Server):
    def __init__(self, *args, **kwargs):
        from django.conf import settings

        self.settings = settings
        kwargs["signal_handlers"] = False
        kwargs["websocket_max_message_size"] = settings.GROUPCAST_MAX_FRAME_BYTES
        kwargs["websocket_max_frame_size"] = settings.GROUPCAST_MAX_FRAME_BYTES
        super().__init__(*args, **kwargs)
        self.draining = None

    def input_queue(self, protocol, scope):
        """A Mailbox (~3 kB less per open connection than an asyncio.Queue); for a
        WebSocket, one that bounds the client's frames as they arrive."""
        if scope["type"] == "websocket" and protocol.transport is not None:
            return ClientInbox(protocol.transport, self.settings.GROUPCAST_CLIENT_RATE)
        return Mailbox()

    def run(self):
        startup_check("socket")
        collect_less()
        reactor.callWhenRunning(self._started)
        super().run()

    def _started(self):
        autobahn.configure(self.ws_factory)
        direct_upgrades(self.http_factory)
        HandshakeGuard(
            self.http_factory,
            timeout=self.settings.GROUPCAST_HANDSHAKE_TIMEOUT,
            limit=self.settings.GROUPCAST_MAX_PENDING_HANDSHAKES,
        )
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

        from service.socket.drain import drain
        from service.socket.hub import close_current_hub, current_hub

        try:
            await drain(current_hub())
            await close_current_hub()
            await get_channel_layer().close_pools()
        finally:
            self.stop()


class SocketCommandLineInterface(CommandLineInterface):
    server_class = SocketServer


def main():
    SocketCommandLineInterface().run(sys.argv[1:])


if __name__ == "__main__":
    main()
