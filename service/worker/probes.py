"""/healthz, /readyz and /metrics of a worker, on GROUPCAST_METRICS_PORT.

runworker serves nothing itself, so a ProbeServer (probe_server.py: one loop on a thread
of its own, with a deadline per request, a request size limit and a bound on open
connections) answers these routes.
"""

import asyncio
import json
import logging

from django.conf import settings

from service import metrics
from service.layer.cluster import key_prefix
from service.storage import keys
from service.storage.clients import aredis_problem
from service.worker.probe_server import JSON, ProbeServer, error_body

log = logging.getLogger(__name__)

NOT_FOUND = error_body("not_found", "not found")

# The worker's state as /readyz reports it: ready only while "serving".
_lifecycle = "starting"


def mark(state):
    """Record the worker's state: "starting", "serving" or "stopping"."""
    global _lifecycle
    _lifecycle = state


class _Readiness:
    """Whether Redis answers, asked once for however many /readyz arrive together, so a
    burst of probes is one PING and not one each."""

    def __init__(self):
        self._asking = None

    async def redis_problem(self):
        asking = self._asking
        if asking is None or asking.done() or asking.get_loop() is not asyncio.get_running_loop():
            self._asking = asyncio.ensure_future(self._ping())
        return await asyncio.shield(self._asking)

    @staticmethod
    async def _ping():
        # Within the readiness probe's own timeout (3 s in the chart), and the request's.
        bound = min(2.0, settings.GROUPCAST_METRICS_TIMEOUT / 2)
        try:
            async with asyncio.timeout(bound):
                # On a cluster: the shards of the job records and of the channel layer,
                # which the worker depends on; not the groups' shards.
                return await aredis_problem("worker", [keys.jobs_due(), layer_key_slot()])
        except TimeoutError:
            metrics.redis_failed("worker")
            return f"redis unreachable (no answer within {bound:g}s)"


def layer_key_slot():
    """A key in the channel layer's slot (its prefix, a hash tag on a cluster)."""
    return key_prefix(settings.GROUPCAST_REDIS_PREFIX)


_readiness = _Readiness()


async def route(method, path):
    """(status, body, content type, headers) for one probe request."""
    if method not in ("GET", "HEAD"):
        return 405, error_body("method_not_allowed", "use GET"), JSON, {"Allow": "GET, HEAD"}
    if path == "/healthz":
        return 200, b'{"status":"ok"}\n', JSON, {}
    if path == "/readyz":
        if _lifecycle != "serving":
            return _unready(_lifecycle)
        problem = await _readiness.redis_problem()
        if problem is not None:
            return _unready(problem)
        return 200, b'{"status":"ready"}\n', JSON, {}
    if path == "/metrics":
        body, kind = metrics.exposition()
        return 200, body, kind, {}
    return 404, NOT_FOUND, JSON, {}


def _unready(reason):
    return 503, json.dumps({"status": "unready", "reason": reason}).encode() + b"\n", JSON, {}


def worker_probe_serve(port, host="0.0.0.0"):
    """Start answering the probes; returns the running ProbeServer."""
    server = ProbeServer(
        route,
        max_connections=settings.GROUPCAST_METRICS_MAX_CONNECTIONS,
        timeout=settings.GROUPCAST_METRICS_TIMEOUT,
        max_request_bytes=settings.GROUPCAST_METRICS_MAX_REQUEST_BYTES,
    ).start(host, port)
    log.info("worker metrics on %s:%d", host, server.port)
    return server
