"""The socket server's book of connections (service/upstream/daphne.py): what Daphne's
once-a-second scan of every connection did, done when each thing happens or falls due.
An application that ends is reaped, its exception logged and answered; a client that
leaves is forgotten once its application has ended, and an application that outlives its
client by application_close_timeout is stopped. (Keep-alive pings on a real process:
tests/integration/test_keepalive.py; Daphne's own suite: tests/upstream_daphne.)"""

import asyncio
import logging
import time

from service.upstream.daphne import DueSeconds, Server
from tests.conftest import eventually

HTTP_SCOPE = {"type": "http", "path": "/", "method": "GET", "headers": []}


class Protocol:
    """What the server calls on a connection's protocol."""

    transport = None

    def __init__(self):
        self.answered = []
        self.checked = 0

    def handle_exception(self, exception):
        self.answered.append(exception)

    def check_timeouts(self):
        self.checked += 1


def running_server(application, **options):
    # (an endpoint it never listens on: run() is not called)
    server = Server(application=application, endpoints=["tcp:port=0"], **options)
    server.connections = {}  # what run() sets up before serving
    return server


def start(server, protocol):
    server.protocol_connected(protocol)
    server.create_application(protocol, dict(HTTP_SCOPE))
    return server.connections[protocol]["application_instance"]


async def stop_all(server):
    running = [d["application_instance"] for d in server.connections.values() if "application_instance" in d]
    for instance in running:
        instance.cancel()
    await asyncio.gather(*running, return_exceptions=True)


async def test_an_application_that_ends_is_reaped_and_its_connection_forgotten_at_the_close():
    async def application(scope, receive, send):
        return None

    server, protocol = running_server(application), Protocol()
    start(server, protocol)
    await eventually(lambda: "application_instance" not in server.connections[protocol], what="reaped")
    assert protocol in server.connections  # the client is still there
    server.protocol_disconnected(protocol)
    assert protocol not in server.connections
    server.protocol_disconnected(protocol)  # a second report of the close changes nothing


async def test_a_client_that_leaves_first_is_forgotten_when_its_application_ends():
    finish = asyncio.Event()

    async def application(scope, receive, send):
        await finish.wait()

    server, protocol = running_server(application), Protocol()
    start(server, protocol)
    server.protocol_disconnected(protocol)
    assert protocol in server.connections  # its application still runs
    finish.set()
    await eventually(lambda: protocol not in server.connections, what="forgotten")


async def test_an_application_that_outlives_its_client_is_stopped_after_the_close_timeout(caplog):
    async def application(scope, receive, send):
        await asyncio.Event().wait()  # ignores the disconnect

    server, protocol = running_server(application, application_close_timeout=10), Protocol()
    instance = start(server, protocol)
    server.protocol_disconnected(protocol)
    left = server.connections[protocol]["disconnected"]
    server.check_due(left + 9)
    assert not instance.done()
    with caplog.at_level(logging.WARNING, logger="daphne.server"):
        server.check_due(left + 11)
        await eventually(lambda: protocol not in server.connections, what="stopped and forgotten")
    assert instance.cancelled()
    assert "took too long to shut down and was killed" in caplog.text


async def test_an_applications_exception_is_logged_and_answered_while_its_client_is_there(caplog):
    async def application(scope, receive, send):
        raise RuntimeError("boom")

    server, protocol = running_server(application), Protocol()
    with caplog.at_level(logging.ERROR, logger="daphne.server"):
        start(server, protocol)
        await eventually(lambda: protocol.answered, what="the exception answered")
    assert isinstance(protocol.answered[0], RuntimeError)
    assert "Exception inside application: boom" in caplog.text
    assert "application_instance" not in server.connections[protocol]


async def test_http_requests_are_checked_only_with_a_time_limit():
    async def application(scope, receive, send):
        await asyncio.Event().wait()

    unlimited, limited = running_server(application), running_server(application, http_timeout=30)
    for server in (unlimited, limited):
        protocol = Protocol()
        protocol.request_start = time.time()
        start(server, protocol)
        server.check_due(protocol.request_start + 29)
        assert protocol.checked == 0
        server.check_due(protocol.request_start + 31)
        assert protocol.checked == (1 if server is limited else 0)
        await stop_all(server)


def test_due_seconds_hand_out_what_has_come_once_and_let_go_of_what_is_gone():
    due = DueSeconds(100.2)
    kept, late, gone = Protocol(), Protocol(), Protocol()
    due.add(101.5, kept)
    due.add(101.1, gone)
    due.add(99.0, late)  # already past: the next second
    del gone
    assert due.take(100.9) == []
    assert due.take(101.0) == [late]
    assert due.take(101.9) == []
    assert due.take(102.0) == [kept]  # not `gone`
    assert due.take(200.0) == [] and not due.buckets


async def test_a_check_that_fails_is_logged_and_the_others_still_run(caplog):
    async def application(scope, receive, send):
        await asyncio.Event().wait()

    class Failing(Protocol):
        def check_timeouts(self):
            raise RuntimeError("broken protocol")

    server = running_server(application, http_timeout=30)
    failing, fine = Failing(), Protocol()
    for protocol in (failing, fine):
        protocol.request_start = time.time()
        start(server, protocol)
    with caplog.at_level(logging.ERROR, logger="daphne.server"):
        server.check_due(time.time() + 31)
    assert fine.checked == 1
    assert "broken protocol" in caplog.text
    await stop_all(server)


async def test_stopping_the_server_cancels_the_running_applications_past_ended_ones():
    async def ends(scope, receive, send):
        return None

    async def runs(scope, receive, send):
        await asyncio.Event().wait()

    server = running_server(ends)
    ended, running = Protocol(), Protocol()
    start(server, ended)
    await eventually(lambda: "application_instance" not in server.connections[ended], what="reaped")
    server.application = runs
    instance = start(server, running)
    server.kill_all_applications()  # Daphne's read every connection's application: KeyError
    await asyncio.gather(instance, return_exceptions=True)
    assert instance.cancelled()
