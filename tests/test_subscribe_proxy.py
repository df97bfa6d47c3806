"""The subscribe proxy's parts that need no backend: reading a status line, and a bound on
what one connection remembers (tests/integration/test_subscribe_proxy.py asks a real one)."""

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
