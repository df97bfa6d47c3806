"""gunicorn's own error answers in the API's JSON shape (gunicorn 27.0.1).

When gunicorn refuses a request before Django sees it (a control character in a header
value, for one: the front passes those on), its worker answers through
`gunicorn.util.write_error` (workers/base.py, Worker.handle_error), which writes an HTML
page. `json_errors()` replaces that function with one writing
`{"error": {"code", "message"}}`, the same status and reason, and `Connection: close`.
"""

import json

from gunicorn import util

CODES = {
    400: "bad_request",
    403: "forbidden",
    414: "uri_too_long",
    417: "expectation_failed",
    431: "header_too_large",
    500: "internal",
    501: "not_implemented",
}
MESSAGE_CHARACTERS = 300


def write_json_error(sock, status_int, reason, mesg):
    """gunicorn.util.write_error's signature and behaviour, with a JSON body."""
    message = f"{reason}: {mesg}" if mesg else reason
    body = json.dumps(
        {"error": {"code": CODES.get(status_int, "bad_request"), "message": message[:MESSAGE_CHARACTERS]}}
    ).encode() + b"\n"
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def json_errors():
    """Make every gunicorn worker forked from here answer its refusals in JSON."""
    util.write_error = write_json_error
