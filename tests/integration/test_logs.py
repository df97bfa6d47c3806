"""Logs: with GROUPCAST_LOG_FORMAT=json every process writes one JSON object per line with
its role and pod, requests and connections carry their ids; text stays the default."""

import asyncio
import json
import subprocess
import sys
import urllib.request

import pytest

from devstack import ROOT, Stack, free_port, wait_until
from tests.integration.clients import Subscriber, api
from tests.integration.conftest import STACK_ENV, running

pytestmark = pytest.mark.slow

POD = "groupcast-test-pod-7d9f8b6c5-x2k4p"


@pytest.fixture(scope="module")
def json_stack():
    topology = Stack(socket_ports=[free_port()], worker_ports=[free_port()],
                     env={**STACK_ENV, "GROUPCAST_LOG_FORMAT": "json", "HOSTNAME": POD})
    yield from running(topology)


def entries(stack, name):
    """Every line of a process's log, each parsed as JSON (failing on one that is not)."""
    lines = (stack.workdir / f"{name}.log").read_text(errors="replace").splitlines()
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"{name}: a log line that is not JSON: {line!r}")
    return parsed


def test_every_line_of_every_role_is_json_with_role_and_pod(json_stack):
    # something from each process: a request (http), a probe (socket), a job (worker)
    api(json_stack, "GET", "/api/v1/groups/news", key="wrong-key-0123456789")
    status, _ = api(json_stack, "POST", "/api/v1/jobs", {"groups": ["a"], "data": 1})
    assert status == 202
    roles = {"http": "http", "front": "http-front", "socket0": "socket", "worker0": "worker"}
    for name, role in roles.items():
        wait_until(lambda: entries(json_stack, name), 10, f"a line in {name}.log")
        for entry in entries(json_stack, name):
            assert entry["role"] == role, (name, entry)
            assert entry["pod"] == POD, (name, entry)
            assert entry["time"].endswith("Z") or entry["time"][-6] in "+-", entry
    # the service's own lines (not nginx's) have a level, a logger and a message
    for name in ("http", "socket0", "worker0"):
        for entry in entries(json_stack, name):
            assert {"level", "logger", "message"} <= set(entry), (name, entry)


def test_a_request_id_is_honoured_logged_and_echoed(json_stack):
    request = urllib.request.Request(json_stack.http_url + "/api/v1/groups/news",
                                     headers={"X-Request-ID": "req-abc.123", "Authorization": "Bearer nope-0123456789abcdef"})
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=10)
    assert error.value.code == 401
    assert error.value.headers.get_all("X-Request-ID") == ["req-abc.123"]
    # Django's line for the 401 and the front's line for the request carry the same id
    wait_until(lambda: any(e.get("request_id") == "req-abc.123" for e in entries(json_stack, "http")),
               10, "the http role's line with the request id")
    (django,) = [e for e in entries(json_stack, "http") if e.get("request_id") == "req-abc.123"]
    assert django["logger"] == "django.request" and "/api/v1/groups/news" in django["message"]
    wait_until(lambda: any(e.get("request_id") == "req-abc.123" for e in entries(json_stack, "front")),
               10, "the front's line with the request id")

    # without one (or with a bad one), the front makes one up, and both sides agree on it
    for headers in ({}, {"X-Request-ID": "bad id with spaces"}):
        request = urllib.request.Request(json_stack.http_url + "/healthz", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            (rid,) = response.headers.get_all("X-Request-ID")
            assert rid != "bad id with spaces" and len(rid) == 32
            assert response.read().endswith(b"}\n")
        wait_until(lambda: any(e.get("request_id") == rid for e in entries(json_stack, "front")), 10, "the front's line")


def test_a_connection_id_is_on_the_lines_of_its_connection(json_stack):
    token = api(json_stack, "POST", "/api/v1/tokens", {"sub": "u1", "groups": ["logs.*"]})[1]["token"]

    async def subscribe_while_redis_is_down():
        client = await Subscriber(json_stack.ws_url(0), token).connect()
        json_stack.redis.kill()
        try:
            await client.socket.send(json.dumps({"type": "subscribe", "group": "logs.one"}))
            reply = await client.frame(15)
            # the other expected failures of an outage: refused publishes and jobs
            assert api(json_stack, "POST", "/api/v1/publish", {"group": "logs.one", "data": 1})[0] == 503
            assert api(json_stack, "POST", "/api/v1/jobs", {"groups": ["logs.one"], "data": 1})[0] == 503
            await asyncio.sleep(2)  # the worker and the socket process notice it too
        finally:
            json_stack.redis.start()  # the same port and AOF: the stack carries on
        await client.close()
        return reply

    reply = asyncio.run(subscribe_while_redis_is_down())
    assert reply["type"] == "error" and reply["code"] == "unavailable", reply
    wait_until(lambda: any("subscribe to logs.one failed" in e["message"] for e in entries(json_stack, "socket0")),
               15, "the failed subscribe's line")
    (line,) = [e for e in entries(json_stack, "socket0") if "subscribe to logs.one failed" in e["message"]]
    assert line["level"] == "WARNING" and line["connection_id"].startswith("c-")
    # expected failures are lines, not tracebacks, in every role
    for name in ("http", "front", "socket0", "worker0"):
        assert not [e for e in entries(json_stack, name) if "exception" in e], name


def test_text_stays_the_default_and_a_bad_format_is_refused():
    env = {"DJANGO_SETTINGS_MODULE": "service.settings", "PYTHONPATH": str(ROOT),
           "REDIS_URL": "redis://127.0.0.1:1/0", "DJANGO_SECRET_KEY": "x" * 40,
           "GROUPCAST_API_KEYS": "k" * 20, "GROUPCAST_JWT_SECRET": "j" * 40}
    code = ("import django, logging; django.setup(); "
            "logging.getLogger('probe').warning('hello %s', 'there')")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.rstrip().endswith("WARNING probe hello there") and not done.stderr.startswith("{")
    done = subprocess.run([sys.executable, "-c", code], env={**env, "GROUPCAST_LOG_FORMAT": "xml"},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "GROUPCAST_LOG_FORMAT: must be one of text, json" in done.stderr
    done = subprocess.run([sys.executable, "-c", code], env={**env, "GROUPCAST_LOG_FORMAT": "json"},
                          capture_output=True, text=True, timeout=60)
    entry = json.loads(done.stderr.strip().splitlines()[-1])
    assert entry["message"] == "hello there" and entry["role"] == "manage" and entry["level"] == "WARNING"
    # a traceback stays inside its line
    code = ("import django, logging; django.setup()\n"
            "try:\n    1/0\nexcept ZeroDivisionError:\n    logging.getLogger('probe').exception('boom')")
    done = subprocess.run([sys.executable, "-c", code], env={**env, "GROUPCAST_LOG_FORMAT": "json"},
                          capture_output=True, text=True, timeout=60)
    (line,) = done.stderr.strip().splitlines()
    assert "ZeroDivisionError" in json.loads(line)["exception"]
