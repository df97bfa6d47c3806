"""Hostile and careless clients against a real socket process: every resource one client
can make it hold is bounded (frames queued, replay memory, unfinished handshakes), and
nothing unauthenticated makes it log a traceback."""

import asyncio
import json
import socket
import time

import pytest
import websockets

from devstack import Stack, free_port
from tests.integration.clients import api, metric, token
from tests.integration.conftest import STACK_ENV, running

pytestmark = pytest.mark.slow

HOSTILE_ENV = {
    **STACK_ENV,
    # a rate a loaded machine still processes faster than (with the inbox pausing the
    # socket, frames arrive no faster than they are processed)
    "GROUPCAST_CLIENT_RATE": "10",
    "GROUPCAST_HANDSHAKE_TIMEOUT": "2",
    "GROUPCAST_MAX_PENDING_HANDSHAKES": "40",
    "GROUPCAST_MAX_REPLAYS": "2",
    "GROUPCAST_SEND_QUEUE_BYTES": "262144",
}


@pytest.fixture(scope="module")
def stack():
    yield from running(Stack(socket_ports=[free_port()], worker_ports=[free_port()], env=HOSTILE_ENV))


def memory_kb(stack, field):
    """VmRSS (now) or VmHWM (peak) of the socket process, in kB."""
    pid = stack.processes["socket0"].pid
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def socket_metric(stack, name, labels=""):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{stack.socket_ports[0]}/metrics", timeout=5) as response:
        return metric(response.read().decode(), name, labels)


async def flood(url, frames):
    """Write `frames` as fast as the connection takes them (draining its replies, so the
    client library sees the close); return the close code the server ended it with."""
    async with websockets.connect(url, open_timeout=10, close_timeout=5) as client:

        async def drain():
            async for _ in client:
                pass

        draining = asyncio.ensure_future(drain())
        try:
            for frame in frames:
                await client.send(frame)
        except websockets.ConnectionClosed:
            pass
        try:
            await asyncio.wait_for(draining, 20)
        except websockets.ConnectionClosed:
            pass
        except TimeoutError:
            return None
        return client.close_code


async def test_a_frame_flood_is_cut_at_arrival_and_holds_no_memory(stack):
    url = f"{stack.ws_url(0)}?token={token(stack, ['flood'])}"
    padding = "x" * 1500
    padded = [json.dumps({"type": "subscribe" if n % 2 == 0 else "unsubscribe", "group": "flood", "pad": padding})
              for n in range(2000)]
    dropped = socket_metric(stack, "groupcast_client_frames_dropped_total")
    peak_before = memory_kb(stack, "VmHWM")
    codes = await asyncio.gather(*(flood(url, padded) for _ in range(10)))
    assert codes == [4008] * 10
    assert socket_metric(stack, "groupcast_client_frames_dropped_total") > dropped
    # before frames were bounded on arrival, these 10 floods grew the process by ~170 MB
    assert memory_kb(stack, "VmHWM") - peak_before < 40_000
    # cheap frames whose processing is slower than the rate refills: still cut
    toggles = [json.dumps({"type": "subscribe" if n % 2 == 0 else "unsubscribe", "group": "flood"})
               for n in range(10_000)]
    assert await flood(url, toggles) == 4008


async def test_a_since_replay_holds_a_page_at_a_time(stack):
    data = "y" * 60_000
    for n in range(400):
        status, body = api(stack, "POST", "/api/v1/publish", {"group": "heavy", "data": {"n": n, "pad": data}})
        assert status == 200, body
    url = f"{stack.ws_url(0)}?token={token(stack, ['heavy'])}"
    peak_before = memory_kb(stack, "VmHWM")
    readers = []
    for _ in range(4):  # clients that subscribe from the start and then read nothing
        client = await websockets.connect(url, open_timeout=10, max_size=2**24)
        await client.send(json.dumps({"type": "subscribe", "group": "heavy", "since": "0-0"}))
        readers.append(client)
    reader = await websockets.connect(url, open_timeout=10, max_size=2**24)
    await reader.send(json.dumps({"type": "subscribe", "group": "heavy", "since": "0-0"}))
    frames = [json.loads(await asyncio.wait_for(reader.recv(), 60)) for _ in range(401)]
    assert frames[0]["type"] == "subscribed"
    assert [frame["data"]["n"] for frame in frames[1:]] == list(range(400))
    # 5 replays of 24 MB each: read whole, that was ~120 MB; a page at a time, two at once,
    # it is a few pages and the send queues (the readers that stall are closed with 4008
    # after 10 s without progress, freeing their replay's place)
    assert memory_kb(stack, "VmHWM") - peak_before < 60_000
    for client in [*readers, reader]:
        await client.close()


def partial_upgrade(port):
    connection = socket.create_connection(("127.0.0.1", port), timeout=5)
    connection.sendall(b"GET /ws?token=x HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    return connection


def closed_by_server(connection, within):
    """True when the server closes `connection` within `within` seconds, while the
    client keeps trickling a byte of header every 0.25 s."""
    connection.settimeout(0.25)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if connection.recv(1024) == b"":
                return True
        except TimeoutError:
            pass
        except OSError:
            return True
        try:
            connection.sendall(b"X")
        except OSError:
            return True
    return False


async def test_unfinished_handshakes_time_out_and_are_bounded(stack):
    port = stack.socket_ports[0]
    timeouts = socket_metric(stack, "groupcast_handshakes_refused_total", 'reason="timeout"')
    over = socket_metric(stack, "groupcast_handshakes_refused_total", 'reason="over_limit"')
    pending = [partial_upgrade(port) for _ in range(40)]
    extra = [partial_upgrade(port) for _ in range(20)]
    # past the limit: refused at once
    assert all(await asyncio.gather(*(asyncio.to_thread(closed_by_server, c, 1.0) for c in extra)))
    # within it: closed at the deadline, however they trickle
    started = time.monotonic()
    assert all(await asyncio.gather(*(asyncio.to_thread(closed_by_server, c, 6.0) for c in pending)))
    assert time.monotonic() - started < 4.0
    assert socket_metric(stack, "groupcast_handshakes_refused_total", 'reason="timeout"') >= timeouts + 40
    assert socket_metric(stack, "groupcast_handshakes_refused_total", 'reason="over_limit"') >= over + 20
    for connection in pending + extra:
        connection.close()
    # and a real client gets in as ever
    async with websockets.connect(f"{stack.ws_url(0)}?token={token(stack, ['after'])}", open_timeout=10) as client:
        await client.send(json.dumps({"type": "subscribe", "group": "after"}))
        assert json.loads(await asyncio.wait_for(client.recv(), 10))["type"] == "subscribed"


def upgrade(port, path, origin=None):
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
    if origin:
        request += f"Origin: {origin}\r\n"
    return first_line(port, (request + "\r\n").encode())


async def test_upgrades_elsewhere_are_404_and_a_null_origin_403_with_nothing_logged(stack):
    port = stack.socket_ports[0]
    assert upgrade(port, "/nope").startswith(b"HTTP/1.1 404")
    assert upgrade(port, "/ws/../admin").startswith(b"HTTP/1.1 404")
    assert upgrade(port, "/ws?token=x", origin="null").startswith(b"HTTP/1.1 403")
    assert "Traceback" not in stack.log("socket0")


UPGRADE = (b"GET /ws?token=abc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def first_line(port, *parts):
    """The first line the socket process answers a raw request with, sent in `parts`."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        for part in parts:
            connection.sendall(part)
        return connection.recv(4096).split(b"\r\n", 1)[0]


@pytest.mark.parametrize("request_head, status", [
    (UPGRADE, b"101"),
    (UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0"), b"101"),
    (UPGRADE.replace(b"GET", b"POST"), b"405"),
    (UPGRADE.replace(b"/ws?", "/wé?".encode()), b"400"),
    (UPGRADE.replace(b"abc", "é".encode()), b"400"),
    (UPGRADE.replace(b"Host:", b"Host :"), b"400"),
    (UPGRADE.replace(b"Host: 127.0.0.1", b"Host: 127\x0b0.0.1"), b"400"),
    (UPGRADE.replace(b"Host:", b"Origin: null\r\nOrigin: null\r\nHost:"), b"400"),
    (UPGRADE.replace(b"Host:", b"Origin: null\r\nHost:"), b"403"),
    (UPGRADE.replace(b"Upgrade: websocket", b"Upgrade: h2c"), b"404"),
    (UPGRADE.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short"), b"400"),
    (UPGRADE.replace(b"Host: 127.0.0.1\r\n", b""), b"400"),
])
async def test_upgrades_are_answered_as_daphne_answers_them_whichever_way_they_are_parsed(stack, request_head, status):
    """service/socket/upgrades.py hands whole plain upgrades to autobahn and leaves the
    rest to Twisted and Daphne: each answer here is the one Daphne alone gave (checked on
    the code before that change), and nothing is logged as a traceback."""
    assert first_line(stack.socket_ports[0], request_head).split(b" ")[1] == status
    assert "Traceback" not in stack.log("socket0")


async def test_an_upgrade_sent_in_pieces_opens_too(stack):
    head = UPGRADE.replace(b"abc", token(stack, ["pieces"]).encode())
    assert first_line(stack.socket_ports[0], head[:20], head[20:-2], head[-2:]).startswith(b"HTTP/1.1 101")
