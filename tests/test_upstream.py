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

    protocol = uvicorn.JsonErrorsProtocol.__new__(uvicorn.JsonErrorsProtocol)
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
