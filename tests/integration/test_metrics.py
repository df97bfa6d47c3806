"""Metrics on every role, proven with real traffic and a real Prometheus: counters add up,
every dashboard and alert query returns data, and an alert fires when Redis is stopped."""

import asyncio
import re
import socket
import subprocess
import time
import urllib.request

import pytest

from devstack import Stack, free_port
from tests.integration.clients import Subscriber, api, metric, publish, token
from tests.integration.conftest import STACK_ENV, running
from tests.integration.prometheus import ALERTS, Prometheus, alert_rules, dashboard_queries, measure

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack():
    topology = Stack(socket_ports=[free_port(), free_port()], env=STACK_ENV)
    yield from running(topology)


@pytest.fixture(scope="module")
def prometheus(stack):
    # The shipped rules, with their `for` periods removed so a provoked alert fires at once.
    rules = re.sub(r"\n\s+for: \w+", "", ALERTS.read_text())
    server = Prometheus(stack, rules=rules).start()
    yield server
    server.stop()


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def socket_metrics(stack, name, labels=""):
    return sum(
        metric(scrape(f"http://127.0.0.1:{port}/metrics"), name, labels) for port in stack.socket_ports
    )


async def eventually(predicate, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while not (result := await asyncio.to_thread(predicate)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.2)
    return result


async def test_publish_and_delivery_counters_add_up_across_two_socket_processes(stack):
    subscribers_count, publishes = 6, 20
    tok = token(stack, ["counted"])
    tasks_before = socket_metrics(stack, "groupcast_event_loop_tasks")
    subscribers = [await Subscriber(stack.ws_url(i % 2), tok).connect() for i in range(subscribers_count)]
    for subscriber in subscribers:
        await subscriber.subscribe("counted")
    published_before = metric(scrape(stack.http_url + "/metrics"), "groupcast_publish_total")
    delivered_before = socket_metrics(stack, "groupcast_deliveries_total")
    for n in range(publishes):
        publish(stack, "counted", n)
    for subscriber in subscribers:
        await subscriber.receive("counted", publishes)
    assert metric(scrape(stack.http_url + "/metrics"), "groupcast_publish_total") - published_before == publishes
    assert socket_metrics(stack, "groupcast_deliveries_total") - delivered_before == publishes * subscribers_count
    assert socket_metrics(stack, "groupcast_connections") == subscribers_count
    assert socket_metrics(stack, "groupcast_subscriptions") == subscribers_count
    assert socket_metrics(stack, "groupcast_event_loop_tasks") >= tasks_before + subscribers_count
    for subscriber in subscribers:
        await subscriber.close()
    await eventually(lambda: socket_metrics(stack, "groupcast_connections") == 0, what="connections to close")
    # each process may start its layer's receive task (kept) and send a batch of events
    await eventually(lambda: socket_metrics(stack, "groupcast_event_loop_tasks") <= tasks_before + 2 * 2,
                     what="the connections' tasks to end")


async def test_a_slow_client_shows_in_drops_and_disconnects(stack):
    tok = token(stack, ["slow"])
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", stack.socket_ports[0]))
    slow = await Subscriber(stack.ws_url(0), tok, sock=raw, max_queue=1).connect()
    await slow.subscribe("slow")
    dropped = socket_metrics(stack, "groupcast_dropped_total", 'reason="slow_client"')
    closed = socket_metrics(stack, "groupcast_disconnects_total", 'code="4008"')
    sent = 0
    while socket_metrics(stack, "groupcast_disconnects_total", 'code="4008"') == closed:
        publish(stack, "slow", "x" * 30000)
        sent += 1
        assert sent < 2000, "the slow client was never closed"
    assert socket_metrics(stack, "groupcast_dropped_total", 'reason="slow_client"') > dropped
    assert await slow.until_closed() == 4008


async def test_every_dashboard_and_alert_query_returns_data_from_real_traffic(stack, prometheus):
    # Traffic for every panel: subscribers, publishes, a job, an error, a disconnect.
    tok = token(stack, ["board"])
    client = await Subscriber(stack.ws_url(1), tok).connect()
    await client.subscribe("board")
    api(stack, "POST", "/api/v1/jobs", {"groups": ["board", "board2"], "data": 1})
    for n in range(30):
        publish(stack, "board", n)
    api(stack, "POST", "/api/v1/publish", {"group": "bad group", "data": 1})
    await client.receive("board", 31)
    missing = {}
    for title, expr in dashboard_queries():
        missing[(title, expr)] = True
    # rate() needs two samples in its window: wait until every query has data.
    async def all_answer():
        for key in list(missing):
            if await asyncio.to_thread(prometheus.query, key[1]):
                del missing[key]
        return not missing

    deadline = time.monotonic() + 60
    while not await all_answer():
        assert time.monotonic() < deadline, f"no data for: {list(missing)}"
        await asyncio.sleep(1)
    for rule in alert_rules():
        assert prometheus.query(measure(rule["expr"])), rule["alert"]
    await client.close()


def test_alert_rules_pass_promtool():
    result = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


async def test_redis_down_fires_its_alert(stack, prometheus):
    def firing():
        return [
            alert["metric"]["role"]
            for alert in prometheus.query('ALERTS{alertname="GroupcastRedisDown", alertstate="firing"}')
        ]

    assert firing() == []
    stack.redis.kill()
    try:
        api(stack, "GET", "/readyz")  # the http role notices on its next Redis command
        roles = await eventually(lambda: {"socket", "worker", "http"} <= set(firing()) and firing(),
                                 timeout=30, what="GroupcastRedisDown to fire for every role")
        assert set(roles) >= {"socket", "worker", "http"}
    finally:
        stack.redis.start()
        stack.wait_ready()
    try:
        await eventually(lambda: firing() == [], timeout=30, what="the alert to resolve")
    except AssertionError as error:
        still = prometheus.query('ALERTS{alertname="GroupcastRedisDown", alertstate="firing"}')
        raise AssertionError(f"{error}; still firing: {[alert['metric'] for alert in still]}") from None


async def test_every_connection_under_daphne_takes_the_fast_path(stack):
    # The fast path writes frames straight to Daphne's transport (service/upstream/);
    # a silent fallback to ASGI send would still work, only slower: this catches it.
    direct = socket_metrics(stack, "groupcast_connection_sinks_total", 'sink="direct"')
    slow = socket_metrics(stack, "groupcast_connection_sinks_total", 'sink="asgi"')
    tok = token(stack, ["fast"])
    subscribers = [await Subscriber(stack.ws_url(i % 2), tok).connect() for i in range(4)]
    for subscriber in subscribers:
        await subscriber.subscribe("fast")
    assert socket_metrics(stack, "groupcast_connection_sinks_total", 'sink="direct"') == direct + 4
    assert socket_metrics(stack, "groupcast_connection_sinks_total", 'sink="asgi"') == slow
    for subscriber in subscribers:
        await subscriber.close()
