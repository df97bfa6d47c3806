"""Which first requests a socket process hands straight to autobahn
(service/socket/upgrades.py): whole, plain WebSocket upgrades only; everything else is
Twisted's and Daphne's to answer, as before (tests/integration/test_hostile.py sends both
kinds to a real socket process)."""

import pytest

from service.socket.upgrades import websocket_upgrade

HEAD = (b"GET /ws?token=abc&x=1 HTTP/1.1\r\nHost: 127.0.0.1:8001\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nOrigin: https://app.example\r\n\r\n")


def test_a_browser_upgrade_goes_straight_to_autobahn_with_its_query_string():
    assert websocket_upgrade(HEAD) == b"token=abc&x=1"
    assert websocket_upgrade(HEAD.replace(b"/ws?token=abc&x=1", b"/ws")) == b""
    assert websocket_upgrade(HEAD.replace(b"Upgrade: websocket", b"upgrade:WebSocket  ")) == b"token=abc&x=1"


@pytest.mark.parametrize("head", [
    HEAD[:-2],  # the head not whole yet (a client trickling it)
    HEAD + b"\x81\x05hello",  # bytes after the head
    HEAD.replace(b"GET ", b"POST "),
    HEAD.replace(b"GET ", b"get "),
    HEAD.replace(b"HTTP/1.1", b"HTTP/1.0"),
    HEAD.replace(b"/ws?", b"http://127.0.0.1/ws?"),  # absolute form
    HEAD.replace(b"/ws?", "/wé?".encode()),  # Daphne's 400: not ASCII
    HEAD.replace(b"x=1", "x=é".encode()),
    HEAD.replace(b"Host:", b"Host :"),
    HEAD.replace(b"Host:", b"Bad Name:"),
    HEAD.replace(b"\r\nHost:", b"\r\n Host:"),  # a folded line
    HEAD.replace(b"app.example", b"app\x0bexample"),  # Daphne's 400: a control character
    HEAD.replace(b"app.example", "app.éxample".encode()),
    HEAD.replace(b"Origin: https://app.example", b"Origin: https://a\r\norigin: https://b"),
    HEAD.replace(b"Origin:", b"Content-Length: 0\r\nOrigin:"),
    HEAD.replace(b"Origin:", b"Transfer-Encoding: chunked\r\nOrigin:"),
    HEAD.replace(b"Upgrade: websocket\r\n", b""),
    HEAD.replace(b"Upgrade: websocket", b"Upgrade: h2c"),
    HEAD.replace(b"Origin:", b"X-Pad: " + b"a" * 16384 + b"\r\nOrigin:"),
    HEAD.replace(b"Origin:", b"".join(b"X-%d: 1\r\n" % n for n in range(501)) + b"Origin:"),
])
def test_anything_else_is_left_to_twisted_and_daphne(head):
    assert websocket_upgrade(head) is None
