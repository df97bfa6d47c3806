"""Daphne's server, with seams it does not offer (daphne 4.2.3, daphne/server.py).
"""

import asyncio
import collections
import contextvars
import functools
import logging
import math
import time
import weakref
from http import HTTPStatus

import daphne.http_protocol
import daphne.server
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer, reactor

from service.upstream import autobahn, twisted

# Daphne's own logger: its lines about applications keep their name.
log = logging.getLogger("daphne.server")


class DueSeconds:
    """Connections by the whole second something is next due for them: a pass takes the
    seconds that have come and nothing else. Entries are weak: a connection that went
    away is not kept for its next due second."""

    def __init__(self, now):
        self.buckets = collections.defaultdict(list)
        self.done = int(now)  # every second up to this one has been taken

    def add(self, when, protocol):
        self.buckets[max(math.ceil(when), self.done + 1)].append(weakref.ref(protocol))

    def take(self, now):
        """Every protocol due by `now` that is still alive."""
        due = []
        for second in range(self.done + 1, int(now) + 1):
            for ref in self.buckets.pop(second, ()):
                protocol = ref()
                if protocol is not None:
                    due.append(protocol)
        self.done = max(self.done, int(now))
        return due


class Server(daphne.server.Server):
    """Daphne's Server with the application's input queue made by `input_queue()`, and
    its connections looked at when something is due for them.

    Daphne scans every connection every second for applications that ended, and every
    two seconds for timeouts and pings: ~5 µs of CPU per idle connection per second (45
    ms/s with 10,000 idle clients, 65% of it those scans; more per connect the more are
    open). Here an application's end is handled when it ends (a done callback, with the
    scan's own steps), and each connection is checked, with Daphne's own check_timeouts,
    at the second its earliest limit or ping falls due.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        now = time.time()
        # each connection's next check of its timeouts (Daphne's check_timeouts), and each
        # gone client's deadline for its application to end
        self.due = DueSeconds(now)
        self.close_due = DueSeconds(now)
        # application instance -> its connection, for one done callback (one bound method,
        # one context) shared by every application: a partial per connection (with its
        # bound method, arguments and a copy of the context) was ~0.25 kB more of every
        # idle connection
        self.protocol_of = {}
        self.ended = self._application_ended
        self.callback_context = contextvars.Context()

    def protocol_connected(self, protocol):
        super().protocol_connected(protocol)
        self._schedule_check(protocol, time.time())

    def protocol_disconnected(self, protocol):
        """Daphne's, and then: a connection whose application has ended is forgotten; one
        whose application runs on is given application_close_timeout to end."""
        details = self.connections.get(protocol)
        if details is None:
            return  # forgotten already (its application ended and it was closed before)
        super().protocol_disconnected(protocol)
        if "application_instance" not in details:
            del self.connections[protocol]
        else:
            self.close_due.add(details["disconnected"] + self.application_close_timeout, protocol)

    def application_checker(self):
        """Daphne's periodic scan, not needed: see _application_ended and _close_due."""

    def timeout_checker(self):
        """Every second: what has fallen due. (Daphne's run() calls it first.)"""
        reactor.callLater(1, self.timeout_checker)  # first: one failure stops no ping
        self.check_due(time.time())

    def check_due(self, now):
        for protocol in self.close_due.take(now):
            details = self.connections.get(protocol)
            if details is not None:
                self._close_due(protocol, details)
        for protocol in self.due.take(now):
            details = self.connections.get(protocol)
            if details is None or "disconnected" in details:
                continue
            try:
                protocol.check_timeouts()
                self._schedule_check(protocol, now)
            except Exception:
                log.exception("checking %r failed", protocol)

    def _schedule_check(self, protocol, now):
        """When check_timeouts has something to do for `protocol` next (Daphne's rules in
        ws_protocol.py and http_protocol.py); nothing for an HTTP request without a limit."""
        if autobahn.is_protocol(protocol):
            opened = getattr(protocol, "socket_opened", now)
            when = getattr(protocol, "last_ping", now) + self.ping_interval
            if self.websocket_timeout >= 0:
                when = min(when, opened + self.websocket_timeout)
            if protocol.state == protocol.STATE_CONNECTING:
                when = min(when, opened + self.websocket_connect_timeout)
        elif self.http_timeout:
            when = getattr(protocol, "request_start", now) + self.http_timeout
        else:
            return
        self.due.add(when, protocol)

    def _close_due(self, protocol, details):
        """Daphne's application_checker for a client gone application_close_timeout ago."""
        instance = details.get("application_instance")
        if instance is not None and not instance.done():
            log.warning(
                "Application instance %r for connection %s took too long to shut down and was killed.",
                instance, repr(protocol),
            )
            instance.cancel()  # _application_ended forgets it

    def _application_ended(self, instance):
        """Daphne's application_checker for one application, when it ends: its exception
        logged (and answered, while the client is there), the connection forgotten once
        the client has gone too."""
        protocol = self.protocol_of.pop(instance, None)
        details = self.connections.get(protocol)
        if details is None or details.get("application_instance") is not instance:
            return
        exception = None if instance.cancelled() else instance.exception()
        if exception:
            if isinstance(exception, KeyboardInterrupt):
                self.stop()  # the application asks the server to exit (Daphne's tests)
            else:
                log.error("Exception inside application: %s", exception, exc_info=exception)
                if "disconnected" not in details:
                    protocol.handle_exception(exception)
        del details["application_instance"]
        if "disconnected" in details:
            del self.connections[protocol]

    def kill_all_applications(self):
        """Daphne's (called as the reactor stops), past connections whose application has
        ended already: it reads every connection's."""
        running = []
        for details in self.connections.values():
            instance = details.get("application_instance")
            if instance is not None and not instance.done():
                instance.cancel()
                running.append(instance)
        log.info("Killed %i pending application instances", len(running))
        stopped = defer.Deferred.fromFuture(asyncio.gather(*running))
        stopped.addErrback(lambda failure: None)
        return stopped

    def input_queue(self, protocol, scope):
        """The queue a new application instance reads its events from."""
        return asyncio.Queue()

    def create_application(self, protocol, scope):
        """Daphne's own (server.py, Server.create_application) with `input_queue()` for
        the queue, and a WebSocket's HTTP upgrade channel let go.

        The HTTP channel that did the upgrade stays the transport's producer, keeping
        itself and its request (~2 kB) alive for the WebSocket's whole life.
        """
        assert "application_instance" not in self.connections[protocol]
        if scope["type"] == "websocket" and protocol.transport is not None:
            protocol.transport.unregisterProducer()
        input_queue = self.input_queue(protocol, scope)
        scope.setdefault("asgi", {"version": "3.0"})
        application_instance = self.application(
            scope=scope,
            receive=input_queue.get,
            send=functools.partial(self.handle_reply, protocol),
        )
        if protocol not in self.connections:
            return None
        instance = self.connections[protocol]["application_instance"] = asyncio.ensure_future(application_instance)
        self.protocol_of[instance] = protocol
        instance.add_done_callback(self.ended, context=self.callback_context)
        return input_queue


    async def handle_reply(self, protocol, message):
        """Daphne's own (server.py, Server.handle_reply) plus ASGI's WebSocket Denial
        Response: `websocket.http.response.start` before accepting refuses the handshake
        with that status (Daphne's ws_protocol.py serverReject knows only 403)."""
        kind = message.get("type")
        if kind == "websocket.http.response.start" and autobahn.is_protocol(protocol):
            if protocol.state == protocol.STATE_CONNECTING and hasattr(protocol, "handshake_deferred"):
                deferred = protocol.handshake_deferred
                del protocol.handshake_deferred
                status = message["status"]
                deferred.errback(ConnectionDeny(code=status, reason=HTTPStatus(status).phrase))
                self.protocol_disconnected(protocol)
            return
        if kind == "websocket.http.response.body":
            return  # autobahn writes the refusal's body itself
        await super().handle_reply(protocol, message)
        if kind == "websocket.accept" and autobahn.is_protocol(protocol):
            forget_handshake(protocol)


class _Path:
    """What Daphne's WebSocket protocol still reads of its request once open (its path,
    for the access log)."""

    __slots__ = ("path",)

    def __init__(self, path):
        self.path = path


def forget_handshake(protocol):
    """Once a WebSocket is open, let go of its handshake: the request with its headers
    and parameters (Daphne's `request`, `clean_headers` — the list the ASGI scope's
    `headers` is — and autobahn's copies), ~4 kB of every idle connection otherwise. The
    application read what it needed from the scope during `connect`."""
    request = getattr(protocol, "request", None)
    if request is not None:
        protocol.request = _Path(request.path)
    headers = getattr(protocol, "clean_headers", None)
    if headers is not None:
        headers.clear()
    autobahn.forget_handshake(protocol)


def open_websocket(server, transport, head, query_string):
    """What Daphne's WebRequest.process does with a WebSocket upgrade (http_protocol.py),
    without the HTTP request it parsed first: a protocol from the server's WebSocket
    factory, given the query string, the transport and the request's head to parse.
    False, with nothing done, when the factory builds no protocol."""
    protocol = server.ws_factory.buildProtocol(transport.getPeer())
    if protocol is None:
        return False
    protocol._raw_query_string = query_string
    twisted.hand_over(transport, protocol)
    protocol.dataReceived(head)
    return True


def websocket_protocol(send):
    """The autobahn protocol behind an ASGI `send` when Daphne serves the connection,
    else None. Daphne hands every application `send = partial(server.handle_reply, protocol)`.
    """
    if isinstance(send, functools.partial) and send.args and autobahn.is_protocol(send.args[0]):
        return send.args[0]
    return None


def direct_writes(protocol):
    """True when frames can be written to the protocol's transport as they are: no
    compression negotiated, and the transport has the fields the fast path reads."""
    return autobahn.uncompressed(protocol) and twisted.supported(protocol.transport)


def http_request(send):
    """Daphne's WebRequest behind an ASGI `send` of an HTTP scope, else None (its
    `transport` is the connection's; SSE measures what waits there)."""
    if isinstance(send, functools.partial) and send.args:
        request = send.args[0]
        if isinstance(request, daphne.http_protocol.WebRequest):
            return request
    return None
