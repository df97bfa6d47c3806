"""The real topology: Redis, gunicorn, two Daphne socket processes and two runworkers,
driven by real WebSocket clients written from the public contract."""

import asyncio
import signal
import socket
import time
import urllib.request

import pytest
import redis

from service.groups import offset_after
from tests.integration.clients import Subscriber, api, metric, publish, token

pytestmark = pytest.mark.slow


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


async def eventually(predicate, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while not (result := await asyncio.to_thread(predicate)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)
    return result


async def test_twenty_subscribers_on_two_processes_get_fifty_publishes_in_order(stack):
    tok = token(stack, ["fan"])
    subscribers = [await Subscriber(stack.ws_url(i % 2), tok).connect() for i in range(20)]
    for subscriber in subscribers:
        await subscriber.subscribe("fan")
    status, info = api(stack, "GET", "/api/v1/groups/fan")
    assert info["subscribers"] == 20
    offsets = [publish(stack, "fan", {"n": n}) for n in range(50)]
    assert all(offset_after(b, a) for a, b in zip(offsets, offsets[1:]))
    for subscriber in subscribers:
        received = await subscriber.receive("fan", 50)
        assert received == [(o, {"n": n}) for n, o in enumerate(offsets)]
        await subscriber.close()


async def test_a_batch_reaches_subscribers_on_both_processes_in_each_group_s_order(stack):
    groups = ["batch.a", "batch.b", "batch.c"]
    tok = token(stack, groups)
    subscribers = [await Subscriber(stack.ws_url(i), tok).connect() for i in range(2)]
    for subscriber in subscribers:
        for group in groups:
            await subscriber.subscribe(group)
    messages = [{"group": group, "data": {"n": n}} for n in range(10) for group in groups]
    messages.insert(4, {"group": "no such group!", "data": 0})
    status, body = api(stack, "POST", "/api/v1/batch", {"messages": messages})
    assert status == 200, body
    assert body["results"][4]["error"]["code"] == "bad_group"
    for subscriber in subscribers:
        for group in groups:
            sent = [(r["offset"], m["data"]) for m, r in zip(messages, body["results"]) if r.get("group") == group]
            assert await subscriber.receive(group, 10) == sent
        await subscriber.close()


async def test_a_reconnecting_client_recovers_what_it_missed_with_since(stack):
    tok = token(stack, ["news"])
    client = await Subscriber(stack.ws_url(0), tok).connect()
    await client.subscribe("news")
    before = [publish(stack, "news", n) for n in range(5)]
    await client.receive("news", 5)
    await client.close()
    missed = [publish(stack, "news", n) for n in range(5, 15)]
    await client.connect(stack.ws_url(1))  # the other process
    reply = await client.subscribe("news", since=client.last_offset("news"))
    assert reply["offset"] == missed[-1]
    after = publish(stack, "news", 15)
    received = await client.receive("news", 16)
    assert [o for o, _ in received] == before + missed + [after]
    assert [d for _, d in received] == list(range(16))
    await client.close()


async def test_a_slow_client_is_closed_with_4008_and_recovers_everything_by_offset(stack):
    tok = token(stack, ["firehose"])
    socket_metrics = f"http://127.0.0.1:{stack.socket_ports[0]}/metrics"
    closed_before = metric(scrape(socket_metrics), "groupcast_disconnects_total", 'code="4008"')
    # A small receive buffer and a client that stops reading: the server's queue fills.
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", stack.socket_ports[0]))
    slow = await Subscriber(stack.ws_url(0), tok, sock=raw, max_queue=1, max_size=2**20).connect()
    await slow.subscribe("firehose")
    fast = await Subscriber(stack.ws_url(1), tok).connect()
    await fast.subscribe("firehose")
    payload = "x" * 30000
    offsets = []

    def closed_by_server():
        return metric(scrape(socket_metrics), "groupcast_disconnects_total", 'code="4008"') > closed_before

    while not await asyncio.to_thread(closed_by_server):
        offsets.append(publish(stack, "firehose", {"n": len(offsets), "pad": payload}))
        assert len(offsets) < 2000, "the server never closed the slow client"
    offsets += [publish(stack, "firehose", {"n": len(offsets), "pad": payload}) for _ in range(5)]
    # The slow client reads what it was sent, then the 4008.
    assert await slow.until_closed() == 4008
    text = scrape(socket_metrics)
    assert metric(text, "groupcast_dropped_total", 'reason="slow_client"') >= 1
    # It reconnects with since and ends up with every message exactly once, in order.
    got = len(slow.messages.get("firehose", []))
    assert got < len(offsets)
    resumed = Subscriber(stack.ws_url(1), tok)
    resumed.messages = slow.messages
    await resumed.connect()
    await resumed.subscribe("firehose", since=slow.last_offset("firehose"))
    received = await resumed.receive("firehose", len(offsets), timeout=20)
    assert [o for o, _ in received] == offsets
    assert [o for o, _ in await fast.receive("firehose", len(offsets), timeout=20)] == offsets
    await resumed.close()
    await fast.close()


async def test_presence_counts_every_process_and_forgets_a_killed_one(stack):
    tok = token(stack, ["lobby"])
    clients = [await Subscriber(stack.ws_url(i % 2), tok).connect() for i in range(6)]
    for client in clients:
        await client.subscribe("lobby")
    assert api(stack, "GET", "/api/v1/groups/lobby")[1]["subscribers"] == 6
    await clients[0].close()
    await eventually(lambda: api(stack, "GET", "/api/v1/groups/lobby")[1]["subscribers"] == 5,
                     what="a closed client to leave the count")
    # Kill socket1 outright: its subscribers vanish from the count within the presence TTL.
    stack.signal("socket1", signal.SIGKILL)
    stack.wait_exit("socket1", 10)
    await eventually(lambda: api(stack, "GET", "/api/v1/groups/lobby")[1]["subscribers"] == 2,
                     timeout=10, what="the dead process's subscribers to expire")
    stack.start_socket(1)
    stack.wait_ready()
    for client in clients:
        await client.close()


async def test_a_job_survives_its_worker_being_killed_and_publishes_once(stack):
    groups = [f"bulk.{n}" for n in range(40)]
    status, body = api(stack, "POST", "/api/v1/jobs", {"groups": groups, "data": {"bulk": True}, "rate": 10})
    assert status == 202
    job_path = f"/api/v1/jobs/{body['job']}"

    def running_with_progress():
        job = api(stack, "GET", job_path)[1]
        return job if job["status"] == "running" and job["published"] >= 5 else None

    job = await eventually(running_with_progress, timeout=20, what="the job to be under way")
    pid = int(job["worker"].rsplit("-", 1)[1])
    victim = next(name for name, p in stack.processes.items() if p.pid == pid)
    stack.signal(victim, signal.SIGKILL)
    stack.wait_exit(victim, 10)

    def finished():
        job = api(stack, "GET", job_path)[1]
        return job if job["status"] in ("done", "failed") else None

    job = await eventually(finished, timeout=30, what="another worker to finish the job")
    assert job["status"] == "done" and job["attempts"] == 2
    assert job["result"]["published"] == len(groups)
    store = redis.Redis.from_url(stack.redis_url)
    assert [store.xlen(f"gc:stream:{g}") for g in groups] == [1] * len(groups)
    stack.start_worker(int(victim.removeprefix("worker")))
    stack.wait_ready()


async def test_every_role_serves_metrics_health_and_readiness(stack):
    publish(stack, "metrics", 1)
    urls = {
        "http": stack.http_url,
        "socket": f"http://127.0.0.1:{stack.socket_ports[0]}",
        "worker": f"http://127.0.0.1:{stack.worker_ports[0]}",
    }
    expected = {
        "http": "groupcast_publish_total",
        "socket": "groupcast_connections",
        "worker": "groupcast_job_queue_depth",
    }
    for role, base in urls.items():
        assert "ok" in scrape(base + "/healthz")
        assert "ready" in scrape(base + "/readyz")
        text = scrape(base + "/metrics")
        assert expected[role] in text, role
    assert metric(scrape(urls["http"] + "/metrics"), "groupcast_publish_total") >= 1


async def test_a_worker_stops_cleanly_on_sigterm(stack):
    stack.signal("worker1", signal.SIGTERM)
    assert stack.wait_exit("worker1", 15) == 0
    stack.start_worker(1)
    stack.wait_ready()
