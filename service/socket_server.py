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

from daphne.cli import CommandLineInterface
from daphne.server import Server
from twisted.internet import reactor

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

    def run(self):
        reactor.callWhenRunning(self._started)
        super().run()

    def _started(self):
        self.ws_factory.setProtocolOptions(closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT)
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
