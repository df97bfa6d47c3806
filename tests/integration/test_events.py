"""Connection events travel from the socket processes over `groupcast.events` to a worker,
which records each batch as a webhook delivery job; workers POST it to
GROUPCAST_WEBHOOK_URL, signed, and retry it until the receiver takes it (real processes, a
real receiver checking signatures as the specification says)."""

import asyncio
import json
import threading
import time
import urllib.request

import pytest
import redis

from devstack import Stack, free_port
from tests.conftest import eventually
from tests.http_endpoint import Endpoint
from tests.integration.clients import Subscriber, metric, token
from tests.integration.conftest import STACK_ENV, running
from tests.standard_webhooks import new_secret, verify

pytestmark = pytest.mark.slow

# Signing secrets of the run: the current one first, then one being rotated out.
SECRET, OLD_SECRET = new_secret(), new_secret()


class Receiver:
    """A webhook endpoint that records every attempt. How it answers a batch is chosen by
    the subs that connect in it: `fail2-*` fails the first two attempts of that batch with
    500, `reject-*` answers 400, `hold-*` holds the first attempt unanswered (until
    `release`); everything else gets 204."""

    def __init__(self):
        self.attempts = []
        self.released = threading.Event()
        self.endpoint = Endpoint("/events", self.answer, self.answered)
        self.url = self.endpoint.url

    def answer(self, request):
        attempt = request.record
        attempt.update(id=request.headers.get("webhook-id"), arrived=time.monotonic(),
                       events=json.loads(request.body)["events"],
                       verified=_verified(request.headers, request.body), status=None)
        earlier = sum(1 for a in self.attempts if a["id"] == attempt["id"])
        self.attempts.append(attempt)
        subs = {e["sub"] for e in attempt["events"] if e["event"] == "connect"}
        if any(s.startswith("fail2-") for s in subs) and earlier < 2:
            return 500
        if any(s.startswith("reject-") for s in subs):
            return 400
        if any(s.startswith("hold-") for s in subs) and earlier == 0:
            self.released.wait(60)
        return 204

    def answered(self, request, status):
        # "gone": the worker that sent it died meanwhile
        request.record["status"] = "gone" if status is None else status

    def carrying(self, sub, event="connect"):
        """The attempts whose batch holds `sub`'s `event`, in arrival order."""
        return [a for a in list(self.attempts) if any(e["sub"] == sub and e["event"] == event for e in a["events"])]


def _verified(headers, body):
    try:
        for secret in (SECRET, OLD_SECRET):  # each one signed it: receivers may hold either
            verify(secret, headers, body)
    except AssertionError:
        return False
    return headers["webhook-signature"].count("v1,") == 2


@pytest.fixture(scope="module")
def receiver():
    endpoint = Receiver()
    yield endpoint
    endpoint.released.set()
    endpoint.endpoint.close()


@pytest.fixture(scope="module")
def stack(receiver):
    """Two workers, so that one can take over what another was delivering."""
    env = dict(STACK_ENV, GROUPCAST_WEBHOOK_URL=receiver.url, GROUPCAST_WEBHOOK_SECRET=f"{SECRET},{OLD_SECRET}")
    yield from running(Stack(worker_ports=[free_port(), free_port()], env=env))


def deliveries(stack, outcome):
    """groupcast_webhook_deliveries_total{outcome} over every worker."""
    total = 0.0
    for port in stack.worker_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            total += metric(response.read().decode(), "groupcast_webhook_deliveries_total", f'outcome="{outcome}"')
    return total


async def connected(stack, sub):
    return await Subscriber(stack.ws_url(0), token(stack, ["news"], sub=sub)).connect()


async def leave(client):
    await client.close()
    await asyncio.sleep(0.5)  # its disconnect event goes out in a batch of its own


async def test_connect_subscribe_and_disconnect_reach_the_webhook_signed(stack, receiver):
    client = await connected(stack, "user-7")
    await client.subscribe("news")
    await client.close()
    await eventually(lambda: receiver.carrying("user-7", "disconnect"), timeout=15, what="the disconnect event")
    mine = [e for a in receiver.attempts for e in a["events"] if e.get("sub") == "user-7"]
    assert [e["event"] for e in mine] == ["connect", "subscribe", "disconnect"]
    assert mine[1]["group"] == "news" and all(isinstance(e["at"], float) for e in mine)
    assert all(a["verified"] for a in receiver.attempts)
    assert all(a["id"].startswith("msg_") for a in receiver.attempts)


async def test_a_failing_receiver_gets_the_batch_again_with_the_same_id_until_it_takes_it(stack, receiver):
    retried, delivered = deliveries(stack, "retried"), deliveries(stack, "delivered")
    client = await connected(stack, "fail2-a")
    try:
        await eventually(lambda: any(a["status"] == 204 for a in receiver.carrying("fail2-a")),
                         timeout=30, what="the third attempt")
        await asyncio.sleep(1.0)  # and nothing after it
        attempts = receiver.carrying("fail2-a")
        assert [a["status"] for a in attempts] == [500, 500, 204]
        assert len({a["id"] for a in attempts}) == 1
        assert all(a["verified"] for a in attempts)
        # backed off: 2 s after the first failure, 4 s after the second
        assert attempts[1]["arrived"] - attempts[0]["arrived"] >= 1.5
        assert attempts[2]["arrived"] - attempts[1]["arrived"] >= 3.5
        assert deliveries(stack, "retried") >= retried + 2
        assert deliveries(stack, "delivered") >= delivered + 1
    finally:
        await leave(client)


async def test_a_refused_batch_is_not_sent_again(stack, receiver):
    rejected = deliveries(stack, "rejected")
    client = await connected(stack, "reject-a")
    try:
        await eventually(lambda: any(a["status"] == 400 for a in receiver.carrying("reject-a")),
                         timeout=15, what="the attempt")
        await asyncio.sleep(4.0)  # past the first retry's backoff (2 s) and then some
        assert [a["status"] for a in receiver.carrying("reject-a")] == [400]
        assert deliveries(stack, "rejected") == rejected + 1
    finally:
        await leave(client)


async def test_a_worker_killed_mid_delivery_leaves_it_to_another(stack, receiver):
    client = await connected(stack, "hold-a")
    try:
        await eventually(lambda: receiver.carrying("hold-a"), timeout=15, what="the first attempt")
        first = receiver.carrying("hold-a")[0]
        name = worker_delivering(stack, "hold-a")
        stack.processes[name].kill()  # SIGKILL: no word to anyone, the lease just runs out
        stack.processes[name].wait(10)
        await eventually(lambda: any(a["status"] == 204 for a in receiver.carrying("hold-a")),
                         timeout=30, what="another worker's attempt")
        attempts = receiver.carrying("hold-a")
        assert len(attempts) == 2 and attempts[1]["id"] == first["id"] and attempts[1]["verified"]
    finally:
        receiver.released.set()
        await leave(client)
    stack.start_worker(int(name.removeprefix("worker")))  # the module's stack, whole again
    stack.wait_ready()


def test_no_log_holds_a_secret(stack):
    for name in stack.processes:
        text = (stack.workdir / f"{name}.log").read_text(errors="replace")
        for secret in (SECRET, OLD_SECRET):
            assert secret.removeprefix("whsec_") not in text, name


def worker_delivering(stack, sub):
    """The name of the stack's worker process holding the running delivery of `sub`'s batch."""
    store = redis.Redis.from_url(stack.redis_url)
    try:
        for key in store.scan_iter("gc:job:*"):
            record = store.hgetall(key)
            if record.get(b"kind") == b"webhook" and record.get(b"status") == b"running" \
                    and sub.encode() in record.get(b"body", b""):
                pid = int(record[b"owner"].decode().partition("/")[0].rpartition("-")[2])
                return next(name for name, process in stack.processes.items() if process.pid == pid)
    finally:
        store.close()
    raise AssertionError(f"no worker holds {sub}'s delivery")
