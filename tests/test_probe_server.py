"""The worker's probe/metrics listener, in this process on a real socket: its routes, and
the limits that keep idle, slow and oversized connections from starving a probe (the real
runworker holding 1,000 idle connections is tests/integration/test_worker_limits.py)."""

import asyncio
import http.client
import json
import socket
import time

import pytest

from service import metrics
from service.worker import probes
from service.worker.probe_server import JSON, ProbeServer


@pytest.fixture
def serve():
    """Start a ProbeServer on a free port (probes.route plus /hang, which never answers)."""
    started = []

    async def route(method, path):
        if path == "/hang":
            start.hanging.append(path)
            await asyncio.Event().wait()  # never set: holds its connection past its request
        return await probes.route(method, path)

    def start(max_connections=8, timeout=2.0, max_request_bytes=1024):
        server = ProbeServer(
            route, max_connections=max_connections, timeout=timeout,
            max_request_bytes=max_request_bytes,
        ).start("127.0.0.1", 0)
        started.append(server)
        return server

    start.hanging = []
    yield start
    for server in started:
        server.stop()


@pytest.fixture
def lifecycle():
    yield probes.mark
    probes.mark("starting")


def get(server, path, method="GET"):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request(method, path)
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, response, body


def refused(reason):
    return metrics.PROBE_REFUSED.labels(reason)._value.get()


def wait_until(predicate, what, timeout=5):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def closed_within(sock, seconds):
    """Seconds until the server closed `sock` (EOF or reset), or None if it did not."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return None
    return time.monotonic() - started


def test_the_routes(serve, lifecycle):
    server = serve()
    assert get(server, "/healthz")[0] == 200
    status, response, body = get(server, "/readyz")
    assert (status, json.loads(body)) == (503, {"status": "unready", "reason": "starting"})
    lifecycle("serving")
    assert get(server, "/readyz?verbose=1")[2] == b'{"status":"ready"}\n'  # JSON bodies end with a newline
    lifecycle("stopping")
    assert json.loads(get(server, "/readyz")[2])["reason"] == "stopping"
    status, response, body = get(server, "/metrics")
    assert status == 200 and b"groupcast_probe_connections 1.0" in body
    assert response.getheader("Content-Type").startswith("text/plain")
    status, response, body = get(server, "/nothing")
    assert status == 404 and response.getheader("Content-Type") == JSON
    assert json.loads(body)["error"]["code"] == "not_found"
    status, response, _ = get(server, "/healthz", method="POST")
    assert status == 405 and response.getheader("Allow") == "GET, HEAD"
    status, response, body = get(server, "/healthz", method="HEAD")
    assert status == 200 and body == b"" and response.getheader("Content-Length") == "16"
    assert response.getheader("Connection") == "close"


def test_readiness_follows_redis(serve, lifecycle, settings):
    lifecycle("serving")
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    server = serve()  # a fresh loop, so a fresh client for that URL
    status, _, body = get(server, "/readyz")
    assert status == 503 and json.loads(body)["reason"].startswith("redis unreachable")


def test_a_request_head_over_the_limit_is_431(serve):
    server = serve(max_request_bytes=1024)
    before = refused("too_large")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Padding: " + b"a" * 2000)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 431 ") and b'"too_large"' in answer
    assert refused("too_large") == before + 1


def test_what_is_not_http_is_400(serve):
    server = serve()
    before = refused("bad_request")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"hello there\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 400 ")
    assert refused("bad_request") == before + 1


def test_the_deadline_covers_the_whole_request_however_it_trickles(serve):
    server = serve(timeout=0.5)
    before = refused("timeout")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Slow: ")
        # a byte every 50 ms: a per-read timeout would never fire
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            while time.monotonic() - started < 3:
                sock.sendall(b"a")
                time.sleep(0.05)
        held = time.monotonic() - started
    assert 0.45 <= held < 1.0, held
    assert refused("timeout") == before + 1


def test_an_idle_connection_is_closed_at_its_deadline(serve):
    server = serve(timeout=0.5)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        assert 0.3 <= closed_within(sock, 3) < 1.0


def test_at_the_bound_the_stalest_idle_connection_makes_room_for_a_probe(serve):
    server = serve(max_connections=4, timeout=30)
    before = refused("over_capacity")
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
    assert get(server, "/healthz")[0] == 200
    assert closed_within(idle[0], 2) is not None  # the oldest made room
    assert all(closed_within(sock, 0.2) is None for sock in idle[1:])
    assert refused("over_capacity") == before + 1
    for sock in idle:
        sock.close()


def test_when_every_connection_is_past_its_request_a_newcomer_is_refused(serve):
    server = serve(max_connections=2, timeout=30)
    before = refused("over_capacity")
    busy = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(2)]
    for sock in busy:
        sock.sendall(b"GET /hang HTTP/1.1\r\n\r\n")
    wait_until(lambda: len(serve.hanging) == 2, "both requests to be read")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as newcomer:
        assert closed_within(newcomer, 2) is not None
    assert refused("over_capacity") == before + 1
    for sock in busy:
        sock.close()
