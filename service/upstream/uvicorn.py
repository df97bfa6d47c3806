"""The http role's gunicorn worker: uvicorn's, on uvloop with httptools' C parser, its
own refusals in the API's JSON shape, and each answer in one write (uvicorn 0.54.0,
protocols/http/httptools_impl.py; uvicorn-worker 0.4.0).

uvicorn answers a request its parser refuses (a control character in a header value, say:
the front passes those on) with `HttpToolsProtocol.send_400_response`, a text/plain body;
`HttpProtocol` writes `{"error": {"code", "message"}}` instead, the same status, and
`Connection: close`.

`RequestResponseCycle.send` writes the status line and headers to the transport on
`http.response.start` and the body on `http.response.body`: two send() calls per answer
(uvloop writes at once), two segments on the front's connection and two wake-ups of the
front to read them. ASGI has the server hold the start until the first body message
("must not start sending the response to the client until it has received at least one
Response Body event"); `OneWrite` does, so a whole answer is one send().
"""

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

MESSAGE_CHARACTERS = 300


def json_error_answer(message):
    """A whole 400 answer, closing the connection, with `message` in the API's error shape."""
    body = json.dumps(
        {"error": {"code": "bad_request", "message": f"Bad Request: {message}"[:MESSAGE_CHARACTERS]}}
    ).encode() + b"\n"
    return (
        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


# the only write a cycle makes before its answer's start (RequestResponseCycle.receive)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class OneWrite:
    """What a request's RequestResponseCycle writes through: its answer's head, held until
    the body's first part, then both in one write; everything after goes straight on.
    The cycle uses only write, close and is_closing of its transport."""

    __slots__ = ("transport", "head")

    def __init__(self, transport):
        self.transport = transport
        self.head = None  # None: nothing written yet; b"": the head is out

    def write(self, data):
        head = self.head
        if head is None and data != CONTINUE:
            self.head = data
            return
        if head:
            data = head + data
            self.head = b""
        self.transport.write(data)

    def close(self):
        # an answer the application left unfinished: its head goes out before the close
        if self.head:
            self.transport.write(self.head)
            self.head = b""
        self.transport.close()

    def is_closing(self):
        return self.transport.is_closing()


class HttpProtocol(HttpToolsProtocol):
    def send_400_response(self, msg):
        self.transport.write(json_error_answer(msg))
        self.transport.close()

    def on_headers_complete(self):
        super().on_headers_complete()
        cycle = self.cycle
        # a new cycle (not one for an upgrade, which returns before making one); its
        # ASGI task is created but has not run yet
        if cycle is not None and cycle.transport is self.transport:
            cycle.transport = OneWrite(self.transport)


class HttpWorker(UvicornWorker):
    """gunicorn's worker for the http role's ASGI application (service/api/app.py)."""

    CONFIG_KWARGS = {
        "loop": "uvloop",
        "http": HttpProtocol,
        # Django's ASGI handler has no lifespan events: not asking spares a log line.
        "lifespan": "off",
        "server_header": False,
        # The client's address from the front's X-Forwarded-For: nothing here reads it
        # (the front logs every request with it), and the middleware was 5% of a publish.
        "proxy_headers": False,
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The front logs every request; uvicorn's own line only when gunicorn's is asked for
        # (GUNICORN_ACCESS_LOG), as gthread did.
        self.config.access_log = bool(self.cfg.accesslog)
