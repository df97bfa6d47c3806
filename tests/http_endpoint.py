"""A loopback HTTP endpoint for what groupcast sends out (webhooks, the subscribe proxy):
a ThreadingHTTPServer on a free port, every POST answered by the test's function."""

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devstack import free_port


@dataclass
class Request:
    path: str
    headers: dict  # names in lower case
    body: bytes
    record: dict = field(default_factory=dict)  # the test's own notes on it


class Endpoint:
    """POSTs to `url` get `answer(request)`'s status (an int, or (status, headers)) and an
    empty body; then `answered(request, status)` runs, with None for a status the sender
    went away before receiving."""

    def __init__(self, path, answer, answered=None):
        self.path = path

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                headers = {name.lower(): value for name, value in self.headers.items()}
                request = Request(self.path, headers, self.rfile.read(int(headers["content-length"])))
                status = answer(request)
                status, extra = status if isinstance(status, tuple) else (status, {})
                try:
                    self.send_response(status)
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender stopped waiting
                    status = None
                if answered is not None:
                    answered(request, status)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_port}{self.path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()
