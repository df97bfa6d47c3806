"""Liveness, readiness and metrics endpoints for every role.

http: Django views (urls.py). socket: a small ASGI app beside /ws, so probes and
scrapes never touch the consumers. worker: a threaded HTTP server on
GROUPCAST_METRICS_PORT, since runworker serves nothing itself.
"""

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.http import HttpResponse, JsonResponse
from redis import RedisError

from service import drain, metrics
from service.store import redis_sync

log = logging.getLogger(__name__)


def redis_reachable(role):
    try:
        redis_sync().ping()
    except (RedisError, OSError):
        metrics.redis_failed(role)
        return False
    metrics.redis_ok(role)
    return True


# http role (Django views)


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    if redis_reachable("http"):
        return JsonResponse({"status": "ready"})
    return JsonResponse({"status": "unready", "reason": "redis unreachable"}, status=503)


def metrics_view(request):
    body, content_type = metrics.exposition()
    return HttpResponse(body, content_type=content_type)


# socket role (ASGI)


async def socket_http_app(scope, receive, send):
    """/healthz, /readyz and /metrics of a socket process."""
    from channels.layers import get_channel_layer

    path = scope["path"]
    if path == "/healthz":
        status, body, kind = 200, b'{"status":"ok"}', b"application/json"
    elif path == "/readyz":
        layer = get_channel_layer()
        if drain.state.draining:
            status, body = 503, {"status": "unready", "reason": "draining"}
        elif not layer.fanout().linked.is_set():
            status, body = 503, {"status": "unready", "reason": "redis unreachable"}
        else:
            status, body = 200, {"status": "ready"}
        body, kind = json.dumps(body).encode(), b"application/json"
    elif path == "/metrics":
        get_channel_layer().fanout()  # so the socket gauges exist before any client
        text, content_type = metrics.exposition()
        status, body, kind = 200, text, content_type.encode()
    else:
        status, body, kind = 404, b'{"error":{"code":"not_found","message":"not found"}}', b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


# worker role (a side thread)


class _WorkerProbe(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/metrics":
            body, kind = metrics.exposition()
            self._reply(200, body, kind)
        elif self.path == "/healthz":
            self._reply(200, b'{"status":"ok"}', "application/json")
        elif self.path == "/readyz":
            ready = redis_reachable("worker")
            self._reply(
                200 if ready else 503,
                b'{"status":"ready"}' if ready else b'{"status":"unready"}',
                "application/json",
            )
        else:
            self._reply(404, b'{"error":{"code":"not_found","message":"not found"}}', "application/json")

    def _reply(self, status, body, kind):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # probes every few seconds would drown the log


def worker_probe_serve(port, host="0.0.0.0"):
    server = ThreadingHTTPServer((host, port), _WorkerProbe)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="probe", daemon=True).start()
    log.info("worker metrics on %s:%d", host, port)
    return server
