"""A small HTTP/1 server for probes and scrapes: one asyncio loop on a thread of its own.

The ThreadingHTTPServer used before kept a thread per connection with no timeout: 500
idle connections made 503 threads, and at the file-descriptor limit it stopped accepting,
so a liveness probe would have restarted a healthy worker. Here an idle or slow connection
costs a file descriptor and a small object, never a thread, and:

- each connection has `timeout` seconds for its whole exchange, from accept to the last
  byte of the answer: a deadline, not renewed per byte, so a trickle cannot hold it;
- a request head over `max_request_bytes` is answered 431, and no body is ever read;
- one request per connection (`Connection: close`), as probes and scrapers expect;
- at most `max_connections` are open. At the bound, the connection that has waited longest
  for its request is closed to admit the newcomer: a probe sends its request as soon as it
  connects, so the stalest idle connection is the least likely to be one, and idle
  connections held by anyone cannot lock probes out. Only when every open connection is
  past its request is the newcomer refused.

Every connection closed for a limit is counted in groupcast_probe_refused_total{reason}.
"""

import asyncio
import collections
import concurrent.futures
import json
import logging
import threading

from service import metrics

log = logging.getLogger(__name__)

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
JSON = "application/json"


def error_body(code, message):
    # every JSON body ends with a newline (so `curl` output does not run into the prompt)
    return json.dumps({"error": {"code": code, "message": message}}).encode() + b"\n"


class ProbeServer:
    """Serves `route(method, path) -> (status, body, content type, headers)`, a coroutine
    function run on the server's own loop, within the limits above."""

    def __init__(self, route, *, max_connections, timeout, max_request_bytes):
        self.route = route
        self.max_connections = max_connections
        self.timeout = timeout
        self.max_request_bytes = max_request_bytes
        # open connections, oldest first (dict as an ordered set)
        self.open = collections.OrderedDict()
        self.loop = asyncio.new_event_loop()
        self._answers = set()
        self._server = None
        self._thread = None

    def start(self, host, port):
        """Listen on host:port and serve from a thread of its own; a port that cannot be
        bound fails here, at start-up."""
        listening = concurrent.futures.Future()

        def serve():
            asyncio.set_event_loop(self.loop)
            try:
                self._server = self.loop.run_until_complete(
                    self.loop.create_server(
                        lambda: _Connection(self), host, port,
                        backlog=max(128, self.max_connections),
                    )
                )
            except BaseException as error:
                listening.set_exception(error)
                return
            listening.set_result(None)
            self.loop.run_forever()
            self.loop.close()

        self._thread = threading.Thread(target=serve, name="probe-server", daemon=True)
        self._thread.start()
        listening.result()
        return self

    @property
    def port(self):
        return self._server.sockets[0].getsockname()[1]

    def stop(self):
        async def shut():
            self._server.close()
            for connection in list(self.open):
                connection.transport.abort()
            for answer in self._answers:
                answer.cancel()
            await asyncio.gather(*self._answers, return_exceptions=True)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(shut(), self.loop)
        self._thread.join(5)

    # Connections (called on the server's loop)

    def admit(self, connection):
        if len(self.open) >= self.max_connections:
            stalest = next((c for c in self.open if c.waiting), None)
            if stalest is None:
                metrics.PROBE_REFUSED.labels("over_capacity").inc()
                return False
            stalest.drop("over_capacity")
        self.open[connection] = None
        self._count()
        return True

    def forget(self, connection):
        if connection in self.open:
            del self.open[connection]
            self._count()

    def _count(self):
        metrics.role_gauges("worker").probe_connections.set(len(self.open))

    def answer(self, connection, method, path):
        task = self.loop.create_task(connection.answer(method, path))
        self._answers.add(task)
        task.add_done_callback(self._answers.discard)


class _Connection(asyncio.Protocol):
    """One connection: its request head, then one answer, all before its deadline."""

    def __init__(self, server):
        self.server = server
        self.transport = None
        self.head = bytearray()
        self.waiting = True  # for its request head
        self.deadline = None

    def connection_made(self, transport):
        self.transport = transport
        if not self.server.admit(self):
            transport.abort()
            return
        self.deadline = self.server.loop.call_later(self.server.timeout, self.drop, "timeout")

    def data_received(self, data):
        if not self.waiting:
            return  # one request per connection; anything after its head is ignored
        self.head += data
        limit = self.server.max_request_bytes
        end = self.head.find(b"\r\n\r\n")
        if end < 0 and len(self.head) <= limit:
            return  # more to come, within the deadline
        self.waiting = False
        self.transport.pause_reading()
        if end < 0 or end + 4 > limit:
            metrics.PROBE_REFUSED.labels("too_large").inc()
            self.reply(431, error_body("too_large", f"request head over {limit} bytes"), JSON)
            return
        request = _request_line(self.head[:end])
        if request is None:
            metrics.PROBE_REFUSED.labels("bad_request").inc()
            self.reply(400, error_body("bad_request", "not an HTTP/1 request"), JSON)
            return
        self.server.answer(self, *request)

    def eof_received(self):
        return not self.waiting  # half-closed after its request: still answer it

    def connection_lost(self, exc):
        if self.deadline is not None:
            self.deadline.cancel()
        self.server.forget(self)

    async def answer(self, method, path):
        try:
            status, body, kind, headers = await self.server.route(method, path)
        except Exception:
            log.exception("probe %s %s failed", method, path)
            status, body, kind, headers = 500, error_body("internal", "internal error"), JSON, {}
        self.reply(status, body, kind, headers, head_only=method == "HEAD")

    def reply(self, status, body, kind, headers=None, head_only=False):
        if self.transport.is_closing():
            return  # dropped meanwhile (its deadline passed)
        lines = [
            f"HTTP/1.1 {status} {REASONS[status]}",
            f"Content-Type: {kind}",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in (headers or {}).items()),
        ]
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head_only else body))
        # Closes once written; the deadline still bounds a peer that never reads it.
        self.transport.close()

    def drop(self, reason):
        """Close at once, unanswered: its deadline passed, or room is needed."""
        metrics.PROBE_REFUSED.labels(reason).inc()
        if self.deadline is not None:
            self.deadline.cancel()
        self.transport.abort()
        self.server.forget(self)


def _request_line(head):
    """(method, path) of a request head, or None if it is not an HTTP/1 request."""
    parts = bytes(head).split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[1].startswith(b"/"):
        return None
    try:
        return parts[0].decode("ascii"), parts[1].partition(b"?")[0].decode("ascii")
    except UnicodeDecodeError:
        return None
