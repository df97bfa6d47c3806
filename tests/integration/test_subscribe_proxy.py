"""The subscribe proxy on real processes: before a subscribe is accepted the socket process
asks GROUPCAST_SUBSCRIBE_PROXY_URL (here a real HTTP server checking signatures as the
Standard Webhooks specification says), and the answer is kept per connection and group."""

import json
import time
import urllib.request

import pytest

from devstack import Stack
from tests.http_endpoint import Endpoint
from tests.integration.clients import Subscriber, api, metric
from tests.integration.conftest import STACK_ENV, running
from tests.standard_webhooks import new_secret, verify

pytestmark = pytest.mark.slow

SECRET = new_secret()
TIMEOUT = 1.0


class Backend:
    """The application's side. It answers by the group's first word: `ok` 204, `no` 403,
    `boom` 500, `slow` only after 3 s (past the proxy's deadline)."""

    def __init__(self):
        self.requests = []  # (verified, body as sent)
        self.endpoint = Endpoint("/groupcast/subscribe?v=1", self.answer)
        self.url = self.endpoint.url

    def answer(self, sent):
        try:
            verify(SECRET, sent.headers, sent.body)
            verified = sent.path == self.endpoint.path
        except AssertionError:
            verified = False
        request = json.loads(sent.body)
        self.requests.append((verified, request))
        word = request["group"].partition(".")[0]
        if word == "slow":
            time.sleep(3)
        return {"ok": 204, "no": 403, "boom": 500}.get(word, 200)

    def asked(self, sub, group):
        return [request for _, request in self.requests if request["sub"] == sub and request["group"] == group]


@pytest.fixture(scope="module")
def backend():
    server = Backend()
    yield server
    server.endpoint.close()


@pytest.fixture(scope="module")
def stack(backend):
    env = dict(
        STACK_ENV,
        GROUPCAST_SUBSCRIBE_PROXY_URL=backend.url,
        GROUPCAST_SUBSCRIBE_PROXY_TIMEOUT=str(TIMEOUT),
        GROUPCAST_WEBHOOK_SECRET=SECRET,
    )
    yield from running(Stack(env=env))


async def connect(stack, sub, info=None):
    body = {"sub": sub, "groups": ["ok.*", "no.*", "boom.*", "slow.*"], "ttl": 600}
    if info is not None:
        body["info"] = info
    status, answer = api(stack, "POST", "/api/v1/tokens", body)
    assert status == 200, answer
    return await Subscriber(stack.ws_url(0), answer["token"]).connect()


async def ask(client, group):
    """Send a subscribe; the server's answer to it."""
    await client.socket.send(json.dumps({"type": "subscribe", "group": group}))
    return await client.frame()


async def still_open(client):
    await client.socket.send(json.dumps({"type": "ping"}))
    assert (await client.frame())["type"] == "pong"


def proxy_requests(stack, outcome):
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.socket_ports[0]}/metrics", timeout=5) as response:
        return metric(response.read().decode(), "groupcast_subscribe_proxy_requests_total", f'outcome="{outcome}"')


async def test_an_allowed_subscribe_is_asked_about_signed(stack, backend):
    client = await connect(stack, "ann", info={"name": "Ann"})
    try:
        reply = await ask(client, "ok.news")
        assert reply["type"] == "subscribed" and reply["group"] == "ok.news"
        [request] = backend.asked("ann", "ok.news")
        assert request == {"sub": "ann", "group": "ok.news", "info": {"name": "Ann"}}
        assert all(verified for verified, _ in backend.requests)
    finally:
        await client.close()


async def test_a_refused_subscribe_is_forbidden_and_the_connection_stays_open(stack, backend):
    client = await connect(stack, "bob")
    try:
        reply = await ask(client, "no.secret")
        assert (reply["type"], reply["code"], reply["group"]) == ("error", "forbidden", "no.secret")
        await still_open(client)
        assert (await ask(client, "ok.public"))["type"] == "subscribed"
        assert backend.asked("bob", "no.secret")[0]["info"] is None
    finally:
        await client.close()


async def test_no_answer_in_time_or_a_failure_is_unavailable_and_asked_again(stack, backend):
    timeouts, errors = proxy_requests(stack, "timeout"), proxy_requests(stack, "error")
    client = await connect(stack, "cy")
    try:
        started = time.monotonic()
        reply = await ask(client, "slow.report")
        assert (reply["code"], reply["group"]) == ("unavailable", "slow.report")
        assert time.monotonic() - started < TIMEOUT + 1  # the deadline, not the backend's 3 s
        for _ in range(2):
            reply = await ask(client, "boom.report")
            assert (reply["code"], reply["group"]) == ("unavailable", "boom.report")
        assert len(backend.asked("cy", "boom.report")) == 2  # a failure is not remembered
        await still_open(client)
        assert proxy_requests(stack, "timeout") == timeouts + 1
        assert proxy_requests(stack, "error") == errors + 2
    finally:
        await client.close()


async def test_answers_are_remembered_per_connection_and_group(stack, backend):
    first = await connect(stack, "dee")
    try:
        for _ in range(2):
            assert (await ask(first, "ok.room"))["type"] == "subscribed"
            await first.socket.send(json.dumps({"type": "unsubscribe", "group": "ok.room"}))
            assert (await ask(first, "no.room"))["code"] == "forbidden"
        assert len(backend.asked("dee", "ok.room")) == 1
        assert len(backend.asked("dee", "no.room")) == 1
        second = await connect(stack, "dee")  # another connection of the same sub is asked anew
        try:
            assert (await ask(second, "ok.room"))["type"] == "subscribed"
            assert len(backend.asked("dee", "ok.room")) == 2
        finally:
            await second.close()
    finally:
        await first.close()


def test_no_log_holds_the_secret(stack):
    for name in stack.processes:
        assert SECRET.removeprefix("whsec_") not in (stack.workdir / f"{name}.log").read_text(errors="replace"), name
