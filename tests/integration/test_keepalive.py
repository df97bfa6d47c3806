"""Keep-alive pings on a real socket process: every quiet WebSocket is pinged each ping
interval (Daphne's --ping-interval), a client that stops answering is dropped after the
ping timeout, and one that answers stays, however long it is quiet.

The pings are sent when each connection falls due (service/upstream/daphne.py), not by
Daphne's scan of every connection; these tests hold that to Daphne's own behaviour with
raw frames, so nothing a client library does on its own is counted."""

import asyncio
import json
import os
import time

import pytest

from devstack import Stack, free_port
from tests.integration.clients import publish, token
from tests.integration.conftest import STACK_ENV, running

pytestmark = pytest.mark.slow

PING_INTERVAL = 1
PING_TIMEOUT = 2
PING, PONG, CLOSE, TEXT = 0x9, 0xA, 0x8, 0x1


@pytest.fixture(scope="module")
def stack():
    yield from running(Stack(
        socket_ports=[free_port()], worker_ports=[free_port()], env=STACK_ENV,
        socket_args=["--ping-interval", str(PING_INTERVAL), "--ping-timeout", str(PING_TIMEOUT)],
    ))


class RawClient:
    """A WebSocket client that answers pings only when told to."""

    async def open(self, stack, group):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", stack.socket_ports[0])
        self.writer.write(
            f"GET /ws?token={token(stack, [group])} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        return self

    def send(self, opcode, payload):
        mask = os.urandom(4)
        assert len(payload) < 126
        self.writer.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask
                          + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload)))

    async def frame(self, timeout):
        """(opcode, payload) of the server's next frame; None when the connection ends."""
        try:
            head = await asyncio.wait_for(self.reader.readexactly(2), timeout)
            length = head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(await self.reader.readexactly(2), "big")
            elif length == 127:
                length = int.from_bytes(await self.reader.readexactly(8), "big")
            return head[0] & 0x0F, await self.reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionResetError):
            return None

    async def subscribe(self, group):
        self.send(TEXT, json.dumps({"type": "subscribe", "group": group}).encode())
        while True:
            opcode, payload = await self.frame(10)
            if opcode == TEXT:
                assert json.loads(payload)["type"] == "subscribed"
                return

    def close(self):
        self.writer.close()


async def test_a_client_that_stops_answering_pings_is_dropped(stack):
    client = await RawClient().open(stack, "silent")
    await client.subscribe("silent")
    pings, started = 0, time.monotonic()
    try:
        while True:  # never a pong
            frame = await client.frame(timeout=PING_INTERVAL + PING_TIMEOUT + 15)
            if frame is None or frame[0] == CLOSE:
                break
            assert frame[0] == PING, frame
            pings += 1
    finally:
        client.close()
    assert pings >= 1  # it was asked, and the connection ended for not answering
    assert time.monotonic() - started < PING_INTERVAL + PING_TIMEOUT + 10


async def test_a_client_that_answers_pings_stays_open_however_quiet(stack):
    client = await RawClient().open(stack, "quiet")
    await client.subscribe("quiet")
    # a connection is checked within a second of falling due, on a check once a second
    most_between_pings = PING_INTERVAL + 2.5
    opened = last = time.monotonic()
    pings, gaps, deadline = 0, [], opened + 4 * most_between_pings
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                frame = await client.frame(timeout=left)
            except asyncio.TimeoutError:
                break  # quiet to the end of the window
            if frame is None:
                pytest.fail("the server ended a connection that answered every ping")
            if frame[0] == PING:
                client.send(PONG, frame[1])
                pings += 1
                gaps.append(time.monotonic() - last)
                last = time.monotonic()
            else:
                assert frame[0] != CLOSE, frame
        # pinged each time it had been quiet for the interval, and still delivering
        assert pings >= 3 and max(gaps) <= most_between_pings, gaps
        publish(stack, "quiet", {"still": "here"})
        while True:
            opcode, payload = await client.frame(10)
            if opcode == PING:
                client.send(PONG, payload)
            elif opcode == TEXT:
                assert json.loads(payload)["data"] == {"still": "here"}
                break
    finally:
        client.close()
