"""Connection events travel from the socket processes over `groupcast.events` to a worker,
which POSTs them to GROUPCAST_WEBHOOK_URL."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from devstack import Stack, free_port
from tests.integration.clients import Subscriber, token

pytestmark = pytest.mark.slow


class Webhook:
    """A local endpoint that records every batch it is sent."""

    def __init__(self):
        self.events = []
        self.arrived = threading.Condition()
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with webhook.arrived:
                    webhook.events.extend(body["events"])
                    webhook.arrived.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_port}/events"

    def wait_for(self, predicate, timeout=15):
        deadline = time.monotonic() + timeout
        with self.arrived:
            while not predicate(self.events):
                remaining = deadline - time.monotonic()
                assert remaining > 0, f"webhook got only {self.events}"
                self.arrived.wait(remaining)


async def test_connect_subscribe_and_disconnect_reach_the_webhook():
    webhook = Webhook()
    stack = Stack(env={"GROUPCAST_WEBHOOK_URL": webhook.url})
    stack.start()
    try:
        client = await Subscriber(stack.ws_url(0), token(stack, ["news"], sub="user-7")).connect()
        await client.subscribe("news")
        await client.close()
        webhook.wait_for(lambda events: {"connect", "subscribe", "disconnect"} <= {e["event"] for e in events})
        mine = [e for e in webhook.events if e.get("sub") == "user-7"]
        assert [e["event"] for e in mine] == ["connect", "subscribe", "disconnect"]
        assert mine[1]["group"] == "news" and all(isinstance(e["at"], float) for e in mine)
    finally:
        stack.stop()
        webhook.server.shutdown()
