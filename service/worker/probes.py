"""/healthz, /readyz and /metrics of a worker: runworker serves nothing itself, so a
threaded HTTP server on GROUPCAST_METRICS_PORT answers them."""

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from service import metrics
from service.storage.clients import redis_reachable

log = logging.getLogger(__name__)

# Every JSON body ends with a newline (so `curl` output does not run into the prompt).
NOT_FOUND = b'{"error":{"code":"not_found","message":"not found"}}\n'

# Set once the worker serves its channels (and handles SIGTERM): ready only from then.
serving = threading.Event()


class _WorkerProbe(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/metrics":
            body, kind = metrics.exposition()
            self._reply(200, body, kind)
        elif self.path == "/healthz":
            self._reply(200, b'{"status":"ok"}\n', "application/json")
        elif self.path == "/readyz":
            if not serving.is_set():
                self._reply(503, b'{"status":"unready","reason":"starting"}\n', "application/json")
            elif not redis_reachable("worker"):
                self._reply(503, b'{"status":"unready","reason":"redis unreachable"}\n', "application/json")
            else:
                self._reply(200, b'{"status":"ready"}\n', "application/json")
        else:
            self._reply(404, NOT_FOUND, "application/json")

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
