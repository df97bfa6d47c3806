"""The subscribe proxy against backends that misbehave on purpose (asyncio servers in the
test), its status line reading and the bound on what one connection remembers;
tests/integration/test_subscribe_proxy.py asks a real backend from real processes."""

import asyncio
import time

import pytest

from service.socket import subscribe_proxy
from service.socket.subscribe_proxy import ALLOWED, REMEMBERED_MAX, UNAVAILABLE, SubscribeProxy, status_code
from service.socket.subscribers import Subscriber
from service.tokens import token_issue, token_verify


@pytest.mark.parametrize("line, code", [(b"HTTP/1.1 204 No Content\r\n", 204), (b"HTTP/1.0 403 Forbidden\r\n", 403),
                                        (b"HTTP/1.1 500\r\n", 500)])
def test_a_status_line_gives_its_code(line, code):
    assert status_code(line) == code


@pytest.mark.parametrize("line", [b"", b"SSH-2.0-OpenSSH_9.6\r\n", b"HTTP/1.1 2x4 No\r\n", b"HTTP/2 200\r\n"])
def test_anything_else_is_not_an_answer(line):
    with pytest.raises(ValueError):
        status_code(line)


class Sink:
    open = True


async def test_one_connection_remembers_a_bounded_number_of_answers(monkeypatch):
    proxy = SubscribeProxy("http://127.0.0.1:9/", timeout=1, concurrency=1)
    asked = []

    async def answer(sub, group, info):
        asked.append(group)
        return UNAVAILABLE if group == "down" else ALLOWED

    monkeypatch.setattr(proxy, "_ask", answer)
    claims = token_verify(token_issue(sub="ann", groups=["room.*"], ttl=60))
    subscriber = Subscriber(channel_name="c", sink=Sink(), claims=claims)
    for number in range(REMEMBERED_MAX + 1):
        assert await proxy.ask(subscriber, f"room.{number}") == ALLOWED
    assert len(subscriber.proxy_answers) == REMEMBERED_MAX and "room.0" not in subscriber.proxy_answers
    await proxy.ask(subscriber, f"room.{REMEMBERED_MAX}")
    await proxy.ask(subscriber, "down")
    await proxy.ask(subscriber, "down")
    assert asked.count(f"room.{REMEMBERED_MAX}") == 1 and asked.count("down") == 2


def test_no_proxy_without_a_url(settings):
    settings.GROUPCAST_SUBSCRIBE_PROXY_URL = None
    assert subscribe_proxy.subscribe_proxy_from_settings() is None


@pytest.fixture
def signing(settings):
    settings.GROUPCAST_WEBHOOK_SECRETS = [b"k" * 32]


async def serve(handle):
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/ask"


async def test_requests_in_flight_are_bounded_and_waiting_counts_against_the_deadline(signing):
    open_now, most = 0, 0

    async def never_answers(reader, writer):
        nonlocal open_now, most
        open_now += 1
        most = max(most, open_now)
        try:
            await reader.read()  # until the proxy gives up and closes
        finally:
            open_now -= 1
            writer.close()

    server, url = await serve(never_answers)
    async with server:
        proxy = SubscribeProxy(url, timeout=0.5, concurrency=2)
        started = time.monotonic()
        answers = await asyncio.gather(*(proxy._ask(f"user-{n}", "room.1", None) for n in range(6)))
        assert answers == [UNAVAILABLE] * 6
        assert time.monotonic() - started < 1.0  # every one within the deadline, waiting included
        assert most == 2


async def test_a_trickled_answer_cannot_hold_a_subscribe_past_the_deadline(signing):
    async def trickles(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        try:
            for byte in b"HTTP/1.1 200 OK\r\n":
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.1)
        except ConnectionError:
            pass
        writer.close()

    server, url = await serve(trickles)
    async with server:
        proxy = SubscribeProxy(url, timeout=0.5, concurrency=2)
        started = time.monotonic()
        assert await proxy._ask("ann", "room.1", None) == UNAVAILABLE
        assert time.monotonic() - started < 0.8


async def test_the_request_is_http_with_the_signature_headers(signing):
    seen = {}

    async def answers_204(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        seen["request"] = lines[0]
        seen["headers"] = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines[1:] if line)}
        seen["body"] = await reader.readexactly(int(seen["headers"]["content-length"]))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
        writer.close()

    server, url = await serve(answers_204)
    async with server:
        proxy = SubscribeProxy(url + "?app=1", timeout=2, concurrency=2)
        assert await proxy._ask("ann", "room.1", {"name": "Ann"}) == ALLOWED
    assert seen["request"] == "POST /ask?app=1 HTTP/1.1"
    assert seen["body"] == b'{"sub":"ann","group":"room.1","info":{"name":"Ann"}}'
    assert seen["headers"]["content-type"] == "application/json"
    assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(seen["headers"])
