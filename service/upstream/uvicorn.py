"""The http role's gunicorn worker: uvicorn's, on uvloop with httptools' C parser, and its
own refusals in the API's JSON shape (uvicorn 0.54.0, uvicorn-worker 0.4.0).

uvicorn answers a request its parser refuses (a control character in a header value, say:
the front passes those on) with `HttpToolsProtocol.send_400_response`
(protocols/http/httptools_impl.py), a text/plain body; `JsonErrorsProtocol` writes
`{"error": {"code", "message"}}` instead, the same status, and `Connection: close`.
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


class JsonErrorsProtocol(HttpToolsProtocol):
    def send_400_response(self, msg):
        self.transport.write(json_error_answer(msg))
        self.transport.close()


class HttpWorker(UvicornWorker):
    """gunicorn's worker for the http role's ASGI application (service/api/app.py)."""

    CONFIG_KWARGS = {
        "loop": "uvloop",
        "http": JsonErrorsProtocol,
        # Django's ASGI handler has no lifespan events: not asking spares a log line.
        "lifespan": "off",
        "server_header": False,
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # The front logs every request; uvicorn's own line only when gunicorn's is asked for
        # (GUNICORN_ACCESS_LOG), as gthread did.
        self.config.access_log = bool(self.cfg.accesslog)
