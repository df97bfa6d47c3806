"""The http role's front (nginx before gunicorn, as in the pod) on real processes: slow and
lying clients do not starve publishes, they are cut off by its timeouts and logged, and
whatever it refuses itself is answered in the API's JSON error shape.

Without the front, 8 clients sending their header a byte every 3 s were enough to make
publishes time out when gunicorn ran gthread workers (each held a thread while it arrived);
its uvicorn workers set no deadline for a header either. `python -m bench.slow_http
--direct` shows what gunicorn alone does.
"""

import asyncio
import concurrent.futures
import http.client
import json
import signal
import socket

import pytest

from bench.slow_http import publish_latencies, summary, under_load
from devstack import Stack, http_status, wait_until
from tests.integration.conftest import running

pytestmark = pytest.mark.slow

HEADER_TIMEOUT = 5  # the defaults of GROUPCAST_HTTP_HEADER_TIMEOUT and _BODY_TIMEOUT
TRICKLE, SHORT_BODY = 300, 50
SECONDS = 10  # of publishing, 20 a second, each phase


@pytest.fixture(scope="module")
def stack():
    yield from running(Stack())


def front_log(stack):
    """The front's access log: one JSON object per request."""
    lines = (stack.workdir / "front.log").read_text(errors="replace").splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def refused_as(stack, status):
    return sum(1 for entry in front_log(stack) if entry["status"] == status)


async def test_slow_and_lying_clients_leave_publishes_answering_within_normal_latency(stack):
    host, port, key = "127.0.0.1", stack.http_port, stack.api_key
    timeouts_before = refused_as(stack, 408)
    await publish_latencies(host, port, key, 1.0)  # warm up
    unloaded = summary(await publish_latencies(host, port, key, SECONDS))
    results, slow = await under_load(host, port, key, trickle=TRICKLE, short_body=SHORT_BODY, seconds=SECONDS)
    loaded = summary(results)
    print(f"unloaded {unloaded}\nwith {TRICKLE} slow headers and {SHORT_BODY} short bodies {loaded}")

    assert unloaded["failed"] == 0 and loaded["failed"] == 0, (unloaded, loaded)
    # Scheduling noise on a small shared machine is a few tens of ms whatever the load.
    assert loaded["p99_ms"] <= 4 * unloaded["p99_ms"] + 50, (unloaded, loaded)
    # Each slow client was cut off by the front's timeouts, none held longer, none answered.
    for kind, count in (("trickle", TRICKLE), ("short_body", SHORT_BODY)):
        assert len(slow[kind].held) >= count, kind
        assert max(slow[kind].held) < HEADER_TIMEOUT + 2, kind
        assert slow[kind].answers == [], kind
    closed = len(slow["trickle"].held) + len(slow["short_body"].held)
    # ... and counted: a 408 line each in the front's log.
    wait_until(lambda: refused_as(stack, 408) - timeouts_before >= closed, 10, f"{closed} timeouts logged")


def exchange(stack, request, timeout=10):
    """(status, headers, body) of the answer to one raw request."""
    with socket.create_connection(("127.0.0.1", stack.http_port), timeout=timeout) as connection:
        connection.sendall(request)
        answer = http.client.HTTPResponse(connection)
        answer.begin()
        return answer.status, answer.headers, answer.read()


def assert_api_error(headers, body, code):
    assert headers["Content-Type"] == "application/json"
    answer = json.loads(body)
    assert set(answer) == {"error"} and set(answer["error"]) == {"code", "message"}
    assert answer["error"]["code"] == code and answer["error"]["message"]


def post(key, headers=b"", body=b'{"group": "news", "data": 1}', content_type=b"application/json"):
    return (b"POST /api/v1/publish HTTP/1.1\r\nHost: groupcast\r\nConnection: close\r\n"
            b"Authorization: Bearer " + key.encode() + b"\r\nContent-Type: " + content_type + b"\r\n"
            + headers + b"Content-Length: %d\r\n\r\n" % len(body) + body)


@pytest.mark.parametrize(
    "request_bytes, status, code",
    [
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: groupcast\r\n\r\n", 414, "uri_too_long"),
        (b"GET /healthz HTTP/1.1\r\nHost: groupcast\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431, "header_too_large"),
        (b"GET /healthz HTTP/1.1\r\nHost: groupcast\r\n" + b"X-Many: header line\r\n" * 2000 + b"\r\n",
         431, "header_too_large"),
        (b"POST /api/v1/publish HTTP/1.1\r\nHost: groupcast\r\nContent-Type: application/json\r\n"
         b"Content-Length: 70000\r\n\r\n", 413, "too_large"),
        (b"POST /api/v1/publish HTTP/1.1\r\nHost: groupcast\r\nContent-Type: application/json\r\n"
         b"Transfer-Encoding: chunked\r\n\r\n10000\r\n" + b"x" * 65536 + b"\r\n10\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n",
         413, "too_large"),
    ],
    ids=["malformed", "url-20kB", "header-9kB", "2000-headers", "content-length-70kB", "chunked-over-64kB"],
)
def test_the_front_refuses_in_the_api_error_shape(stack, request_bytes, status, code):
    answered, headers, body = exchange(stack, request_bytes)
    assert answered == status
    assert_api_error(headers, body, code)


@pytest.mark.parametrize(
    "headers, content_type, status, code",
    [
        (b"Idempotency-Key: a\x01b\r\n", b"application/json", 400, "bad_request"),  # gunicorn's refusal
        (b"Idempotency-Key: caf\xe9\r\n", b"application/json", 400, "bad_request"),  # Django's
        (b"", b"text/plain", 415, "unsupported_media_type"),
        (b"", b"application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ],
    ids=["control-byte-key", "latin1-key", "text-plain", "form"],
)
def test_what_gunicorn_and_django_refuse_behind_the_front_is_json_too(stack, headers, content_type, status, code):
    answered, answer_headers, body = exchange(stack, post(stack.api_key, headers, content_type=content_type))
    assert answered == status
    assert_api_error(answer_headers, body, code)


async def test_sigterm_lets_a_request_in_flight_finish(stack):
    """The front turns SIGTERM (what Kubernetes sends) into nginx's graceful stop."""
    body = b'{"group": "news", "data": "in flight"}'
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.http_port)
    head, _, _ = post(stack.api_key, b"Expect: 100-continue\r\n", body=body).partition(b"\r\n\r\n")
    writer.write(head + b"\r\n\r\n")
    # nginx asks for the body: the request is in flight at the front.
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10) == b"HTTP/1.1 100 Continue\r\n\r\n"
    stack.signal("front", signal.SIGTERM)
    await asyncio.to_thread(wait_until, lambda: http_status(stack.http_url + "/healthz") is None, 10,
                            "the front to stop accepting")
    writer.write(body)
    status_line = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 200"), status_line
    assert stack.wait_exit("front", 20) == 0
    stack.start_front()
    stack.wait_ready()


def test_gunicorn_down_is_a_json_502_with_retry_after(stack):
    stack.signal("http", signal.SIGTERM)
    stack.wait_exit("http", 30)
    status, headers, body = exchange(stack, post(stack.api_key))
    assert status == 502 and headers["Retry-After"] == "2"
    assert_api_error(headers, body, "upstream_unavailable")
    stack.start_http()
    stack.wait_ready()


TIME_WAIT = "06"  # include/net/tcp_states.h


def closed_connections(port):
    """Loopback TCP connections with `port` at one end that were closed in the last minute
    or so (in TIME-WAIT on the side that closed first), from /proc/net/tcp."""
    count = 0
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            local, remote, state = line.split()[1:4]
            ports = {int(local.split(":")[1], 16), int(remote.split(":")[1], 16)}
            count += state == TIME_WAIT and port in ports
    return count


def test_many_concurrent_publishes_reuse_the_fronts_connections_to_gunicorn(stack):
    # nginx's customary 16 idle upstream connections made more than 16 publishes at once
    # close the surplus after each answer and open new ones (GROUPCAST_HTTP_MAX_CONNECTIONS / 4 now)
    clients, each = 64, 25
    body = json.dumps({"group": "keep-alive", "data": {"n": 1}})
    headers = {"Authorization": f"Bearer {stack.api_key}", "Content-Type": "application/json"}
    before = closed_connections(stack.gunicorn_port)

    def publisher(_):
        connection = http.client.HTTPConnection("127.0.0.1", stack.http_port, timeout=30)
        statuses = []
        for _ in range(each):
            connection.request("POST", "/api/v1/publish", body, headers)
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
        connection.close()
        return statuses

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        statuses = [status for answered in pool.map(publisher, range(clients)) for status in answered]
    assert statuses == [200] * (clients * each)
    closed = closed_connections(stack.gunicorn_port) - before
    assert closed <= clients // 4, f"{closed} connections between the front and gunicorn closed"
