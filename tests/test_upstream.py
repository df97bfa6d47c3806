"""The upstream internals groupcast relies on (service/upstream/) were checked against
exact versions: these tests fail when an installed or pinned version moves, so that an
upgrade re-reads the cited upstream code before moving the pin."""

import tomllib
from importlib.metadata import version

from devstack import ROOT
from service.upstream import PINNED, versions_moved


def test_installed_upstreams_are_the_versions_the_overrides_were_checked_against():
    assert versions_moved() == {}


def test_pyproject_pins_each_upstream_at_the_checked_version():
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(item.split("==") for item in dependencies if "==" in item)
    pins = {name.split("[")[0].lower(): value for name, value in pins.items()}
    assert {name: pins.get(name) for name in PINNED} == PINNED


def test_versions_moved_names_an_upstream_off_its_pin(monkeypatch):
    monkeypatch.setitem(PINNED, "daphne", "0.0.1")
    assert versions_moved() == {"daphne": version("daphne")}


def test_uvicorn_refusals_are_written_in_the_api_error_shape():
    import json

    from service.upstream import uvicorn

    class Transport:
        written, closed = b"", False

        def write(self, data):
            self.written += data

        def close(self):
            self.closed = True

    protocol = uvicorn.HttpProtocol.__new__(uvicorn.HttpProtocol)
    protocol.transport = Transport()
    protocol.send_400_response("Invalid HTTP request received.")
    head, _, body = protocol.transport.written.partition(b"\r\n\r\n")
    assert protocol.transport.closed
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Content-Type: application/json" in head and b"Connection: close" in head
    assert f"Content-Length: {len(body)}".encode() in head
    assert json.loads(body) == {"error": {"code": "bad_request",
                                          "message": "Bad Request: Invalid HTTP request received."}}


def test_autobahn_options_live_on_the_protocol_class_not_on_each_connection():
    from autobahn.twisted.websocket import WebSocketServerFactory

    from service.upstream import autobahn

    factory = WebSocketServerFactory()
    original = factory.protocol
    autobahn.configure(factory)
    protocol = factory.buildProtocol(None)
    protocol._connectionMade = lambda: None  # no transport here; only the options matter
    assert isinstance(protocol, original) and factory.protocol.CONFIG_ATTRS == ()
    for name in original.CONFIG_ATTRS:
        assert getattr(protocol, name) == getattr(factory, name), name
        assert name not in protocol.__dict__, name
    assert protocol.closeHandshakeTimeout == autobahn.CLOSE_HANDSHAKE_TIMEOUT
    # a callable option is called as a plain function, not bound as a method
    assert protocol.perMessageCompressionAccept(["offer"]) == factory.perMessageCompressionAccept(["offer"])


def test_an_open_connection_forgets_its_handshake_but_can_still_queue_a_synchronous_send():
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol

    from service.upstream import autobahn

    factory = WebSocketServerFactory()
    factory.protocol = WebSocketServerProtocol
    protocol = factory.buildProtocol(None)
    protocol.__dict__.update(send_queue=__import__("collections").deque(), http_headers={"host": "h"},
                             http_response_data=b"HTTP/1.1 101")
    autobahn.forget_handshake(protocol)
    assert "http_headers" not in protocol.__dict__ and "http_response_data" not in protocol.__dict__
    assert protocol.trafficStats is autobahn.SHARED_TRAFFIC_STATS
    assert len(protocol.send_queue) == 0
    protocol.send_queue.append((b"frame", True))  # what sendData(sync=True) does
    assert list(protocol.send_queue) == [(b"frame", True)]
    assert protocol.send_queue.popleft() == (b"frame", True)


class RecordedTransport:
    """A real TCP transport, its writes recorded on the way."""

    def __init__(self, transport, writes):
        self._transport, self.writes = transport, writes

    def write(self, data):
        self.writes.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name):
        return getattr(self._transport, name)


async def answers_of_the_http_protocol(app, talk):
    """Serve `app` with the http role's uvicorn protocol on a real socket; `talk(reader,
    writer)` is the client's side. Returns the protocol's writes."""
    import asyncio

    import uvicorn as uvicorn_package

    from service.upstream import uvicorn

    config = uvicorn_package.Config(app, lifespan="off", http=uvicorn.HttpProtocol)
    config.load()
    state, writes = uvicorn_package.server.ServerState(), []

    class Recorded(uvicorn.HttpProtocol):
        def connection_made(self, transport):
            super().connection_made(RecordedTransport(transport, writes))

    server = await asyncio.get_running_loop().create_server(
        lambda: Recorded(config=config, server_state=state, app_state={}), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
    try:
        await asyncio.wait_for(talk(reader, writer), timeout=10)
    finally:
        writer.close()
        server.close()
    return writes


async def test_the_http_role_writes_each_answer_whole_in_one_write():
    """The status line and headers go out with the body, not in a send() of their own
    (that was two segments and two wake-ups of the front per publish)."""

    async def app(scope, receive, send):
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"3")]})
        await send({"type": "http.response.body", "body": b"ok\n"})

    async def talk(reader, writer):
        for _ in range(2):
            writer.write(b"POST /api/v1/publish HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            head = await reader.readuntil(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert await reader.readexactly(3) == b"ok\n"

    writes = await answers_of_the_http_protocol(app, talk)
    assert len(writes) == 2 and all(w.startswith(b"HTTP/1.1 200 OK\r\n") and w.endswith(b"\r\n\r\nok\n")
                                    for w in writes)


async def test_a_streamed_answer_starts_with_its_first_part_and_a_100_continue_is_not_held():
    import asyncio

    second_part = asyncio.Event()

    async def app(scope, receive, send):
        await receive()  # the body: asked for after the client's Expect, so a 100 first
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await second_part.wait()
        await send({"type": "http.response.body", "body": b"second"})

    async def talk(reader, writer):
        writer.write(b"POST /x HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        assert await reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        writer.write(b"{}")
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"transfer-encoding: chunked" in head
        assert await reader.readuntil(b"first\r\n") == b"5\r\nfirst\r\n"
        second_part.set()
        assert await reader.readuntil(b"0\r\n\r\n") == b"6\r\nsecond\r\n0\r\n\r\n"

    writes = await answers_of_the_http_protocol(app, talk)
    assert writes[0] == b"HTTP/1.1 100 Continue\r\n\r\n"
    assert writes[1].startswith(b"HTTP/1.1 200 OK\r\n") and writes[1].endswith(b"\r\n\r\n5\r\nfirst\r\n")
    assert writes[2:] == [b"6\r\nsecond\r\n0\r\n\r\n"]
