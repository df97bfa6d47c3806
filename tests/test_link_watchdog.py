"""The socket process's Redis link watchdog, on a Redis of the test's own: an idle link is
pinged every period and never declared lost while Redis answers, a hung Redis is found
within (GROUPCAST_REDIS_PING_MISSES + 2) periods, and reconnects back off with jitter."""

import asyncio
import time

import pytest
import redis

from service import metrics
from service.storage import pubsub
from tests.conftest import eventually

MISSES = 3


@pytest.fixture
def own_redis(request, settings, private_redis):
    """The hub links to a Redis of the test's own (the tests pause it) with a short
    watchdog period (the test's parameter); requested before `hub`, so the hub is built
    with both."""
    settings.REDIS_URL = private_redis.url
    settings.GROUPCAST_REDIS_PING_SECONDS = request.param
    settings.GROUPCAST_REDIS_PING_MISSES = MISSES
    client = redis.Redis.from_url(private_redis.url)
    yield client
    client.close()


def losses(reason):
    return metrics.LINK_LOSSES.labels(reason)._value.get()


def pubsub_client(client):
    [entry] = client.client_list(_type="pubsub")
    return entry


IDLE_PERIOD = 0.05


@pytest.mark.parametrize("own_redis", [IDLE_PERIOD], indirect=True)
async def test_an_idle_link_is_pinged_and_never_declared_lost(own_redis, hub):
    await eventually(lambda: hub.linked, what="the Redis link")
    [link] = hub.fanout.subscriptions.links.values()
    connection = link.pubsub
    silent, failed = losses("silent"), losses("error")
    started = time.monotonic()
    # 300 periods with nothing to read but pongs. The old watchdog (ping only after a
    # full silent period, loss after two) lost such a link 1-2 times per 400 periods
    # here, and 5 times in 9 minutes at its 5 s period in production.
    while time.monotonic() - started < 300 * IDLE_PERIOD:
        assert hub.linked, f"link declared lost after {time.monotonic() - started:.1f}s idle"
        await asyncio.sleep(IDLE_PERIOD / 2)
    assert (losses("silent"), losses("error")) == (silent, failed)
    assert link.pubsub is connection  # the same subscription throughout
    connection = pubsub_client(own_redis)
    assert connection["cmd"] == "ping" and int(connection["age"]) >= int(250 * IDLE_PERIOD)


PERIOD = 0.2


@pytest.mark.parametrize("own_redis", [PERIOD], indirect=True)
async def test_a_hung_redis_is_found_within_the_bound_and_the_link_comes_back(own_redis, hub):
    await eventually(lambda: hub.linked, what="the Redis link")
    silent = losses("silent")
    # Redis holds every client's commands, pings included, without closing anything:
    # only the watchdog can tell.
    own_redis.execute_command("CLIENT", "PAUSE", 3000, "ALL")
    paused = time.monotonic()
    await eventually(lambda: losses("silent") > silent, timeout=5, what="the hung link to be found")
    found = time.monotonic() - paused
    assert found <= (MISSES + 2) * PERIOD + 0.3, found
    assert not hub.linked
    await eventually(lambda: hub.linked, timeout=10, what="the link to come back after the pause")
    assert losses("silent") == silent + 1


def test_reconnects_back_off_with_jitter():
    for failures in range(10):
        ceiling = min(5.0, 0.1 * 2**failures)
        delays = [pubsub.reconnect_delay(failures) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        # a fleet that lost Redis together spreads its reconnects over half the window
        assert max(delays) - min(delays) > ceiling / 4
