"""Rebalancing on real processes: every client starts on one socket process; the other
has none. The loaded one moves its excess (1012, oldest first, at a bounded rate) until
both hold about the mean, and every acknowledged message reaches every client exactly
once and in order throughout."""

import asyncio
import time
import urllib.request

import pytest

from devstack import Stack, free_port
from tests.integration.clients import ResumingClient, metric, token
from tests.integration.conftest import STACK_ENV, running
from tests.integration.test_faults import Publisher, exactly_once_in_order

pytestmark = pytest.mark.slow
CLIENTS = 40


@pytest.fixture(scope="module")
def stack():
    env = {**STACK_ENV, "GROUPCAST_REBALANCE": "true", "GROUPCAST_REBALANCE_RATE": "50"}
    yield from running(Stack(socket_ports=[free_port(), free_port()], worker_ports=[free_port()], env=env))


def connections(stack):
    counts = []
    for port in stack.socket_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            counts.append(metric(response.read().decode(), "groupcast_connections"))
    return counts


def rebalanced(stack):
    total = 0
    for port in stack.socket_ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            total += metric(response.read().decode(), "groupcast_rebalanced_total")
    return total


async def test_an_overloaded_process_moves_its_excess_and_nothing_is_lost(stack):
    tok = token(stack, ["balanced"])
    # a client's next connection goes to the next URL: as if through a Service
    clients = [ResumingClient([stack.ws_url(0), stack.ws_url(1)], tok, "balanced").start() for _ in range(CLIENTS)]
    for client in clients:
        await asyncio.wait_for(client.subscribed.wait(), 15)
    publisher = Publisher(stack, "balanced", interval=0.05).start()
    deadline = time.monotonic() + 30
    while True:
        counts = await asyncio.to_thread(connections, stack)
        if all(abs(count - CLIENTS / 2) <= 5 for count in counts) and sum(counts) == CLIENTS:
            break
        assert time.monotonic() < deadline, f"not balanced in 30 s: {counts}"
        await asyncio.sleep(0.5)
    moved = await asyncio.to_thread(rebalanced, stack)
    assert CLIENTS / 2 - 5 <= moved <= CLIENTS  # the excess, not everyone
    await publisher.stop()
    for client in clients:
        await client.until_holding(publisher.acknowledged, timeout=30)
        exactly_once_in_order(client, publisher.acknowledged)
    for client in clients:
        await client.stop()
