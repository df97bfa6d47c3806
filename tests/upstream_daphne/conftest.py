"""Daphne's own tests of its HTTP and WebSocket serving, run against the socket role's
server (service/socket/server.py): its first-request fast path straight to autobahn
(upgrades.py), the handshake guard, autobahn's and Daphne's seams (service/upstream/).

Daphne's test harness (daphne/testing.py) serves each test from a forked process that
installs a fresh reactor, then imports daphne.server and builds its Server there. The
socket role's modules hold the reactor they were imported with, so in that process they
are imported anew after the reactor, and their server is the one Daphne builds.
"""

import multiprocessing
import sys

import daphne.testing
import pytest

_reinstall_reactor = daphne.testing._reinstall_reactor

# what Daphne's harness passes and the socket role sets from its own settings instead
# (GROUPCAST_MAX_FRAME_BYTES for both limits; a real socket process is held to its 1009 by
# tests/integration/test_faults.py::test_a_frame_over_the_size_limit_is_answered_with_a_1009_close)
SIZE_LIMIT_TESTS = {
    "test_websocket_max_message_size",
    "test_websocket_max_frame_size",
    "test_websocket_max_message_size_allows_under_limit",
}


def _reinstall_reactor_and_serve_groupcast():
    _reinstall_reactor()
    stale = [name for name in sys.modules if name.startswith(("service.socket", "service.upstream"))]
    for name in stale:
        del sys.modules[name]
    import daphne.server

    from service.socket.server import SocketServer

    daphne.server.Server = SocketServer


@pytest.fixture(autouse=True)
def groupcast_socket_server(monkeypatch):
    monkeypatch.setattr(daphne.testing, "_reinstall_reactor", _reinstall_reactor_and_serve_groupcast)


def pytest_collection_modifyitems(items):
    for item in items:
        if "upstream_daphne" not in item.nodeid:
            continue
        item.add_marker(pytest.mark.slow)  # a server process per test
        if item.name in SIZE_LIMIT_TESTS:
            item.add_marker(pytest.mark.skip(reason="the socket role's size limits come from GROUPCAST_MAX_FRAME_BYTES"))


def pytest_sessionfinish():
    # A test that fails while hypothesis shrinks or explains it can leave its server
    # process running; the run would wait for it at exit.
    for process in multiprocessing.active_children():
        process.kill()
