"""Server-Sent Events: the one-way transport for clients whose WebSockets are blocked.

    GET /sse?token=<JWT>&group=<g>[&group=<g2>...][&since=<cursor>]

A stream of `subscribed` (every group's offset), then `message` events, each with the
stream's cursor as its `id`; a browser reconnecting with `Last-Event-ID` (or a client
passing `since`) resumes every group where it was, with no gap and no duplicate. Errors
before the stream starts are JSON with the API's shape. Same limits as WebSockets; a
slow client's stream is ended (counted as 4008), a drain ends streams over its window.
"""

import asyncio
import base64
import binascii
import json
from urllib.parse import parse_qs

from django.conf import settings

from service import logs, metrics
from service.groups import GROUP_RULE, is_group_name, parse_offset
from service.socket.handshakes import streaming
from service.socket.hub import current_hub
from service.socket.sinks import SseSink
from service.socket.subscribers import Subscriber
from service.tokens import TokenError, token_verify
from service.upstream import daphne

# Headers a page on another origin may read and send (EventSource sends Last-Event-ID).
CORS_HEADERS = b"last-event-id"


class Refusal(Exception):
    def __init__(self, status, code, message, headers=()):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, list(headers)


def cursor_encode(offsets):
    """The stream's position, opaque to clients: every group's offset."""
    text = json.dumps(offsets, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def cursor_decode(cursor):
    """{group: offset} of a cursor; ValueError when it is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        offsets = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise ValueError("not a cursor") from None
    if not isinstance(offsets, dict) or not all(is_group_name(g) for g in offsets):
        raise ValueError("not a cursor")
    for offset in offsets.values():
        parse_offset(offset)
    return offsets


async def sse_app(scope, receive, send):
    """GET /sse (and its CORS preflight)."""
    # Every log line of this stream carries its id (see service/logs.py).
    logs.connection_id.set(logs.new_connection_id())
    headers = dict(scope.get("headers", []))
    origin = headers.get(b"origin")
    try:
        cors = _cors(origin)
        if scope["method"] == "OPTIONS":
            await _respond(send, 204, b"", cors + [(b"access-control-allow-methods", b"GET"),
                                                    (b"access-control-allow-headers", CORS_HEADERS),
                                                    (b"access-control-max-age", b"600")])
            return
        if scope["method"] != "GET":
            raise Refusal(405, "method_not_allowed", "use GET", [(b"allow", b"GET, OPTIONS")])
        claims, groups, since = _read_request(scope, headers)
        hub = current_hub()
        refusal = hub.refusal()
        if refusal is not None:
            raise Refusal(503, refusal[1], refusal[2], [(b"retry-after", b"2")])
    except Refusal as refusal:
        await _respond(send, refusal.status, _error_body(refusal.code, refusal.message),
                       [*cors_of(origin), *refusal.headers, (b"content-type", b"application/json")])
        return
    await _stream(scope, receive, send, hub, claims, groups, since, cors)


def cors_of(origin):
    try:
        return _cors(origin)
    except Refusal:
        return []


def _cors(origin):
    if origin is None:
        return []
    allowed = settings.GROUPCAST_ALLOWED_ORIGINS
    if "*" not in allowed and origin.decode("latin-1") not in allowed:
        raise Refusal(403, "forbidden", "this Origin may not open streams")
    return [(b"access-control-allow-origin", origin), (b"vary", b"origin")]


def _read_request(scope, headers):
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    try:
        claims = token_verify((query.get("token") or [""])[0])
    except TokenError as error:
        raise Refusal(401, "bad_token", str(error)) from None
    groups = list(dict.fromkeys(query.get("group", [])))
    if not groups or not all(is_group_name(group) for group in groups):
        raise Refusal(400, "bad_group", f"give one or more group parameters, each {GROUP_RULE}")
    if len(groups) > settings.GROUPCAST_MAX_SUBSCRIPTIONS:
        raise Refusal(400, "too_many_subscriptions", f"at most {settings.GROUPCAST_MAX_SUBSCRIPTIONS} groups")
    refused = [group for group in groups if not claims.groups.allows(group)]
    if refused:
        raise Refusal(403, "forbidden", f"the token does not allow {refused[0]}")
    cursor = headers.get(b"last-event-id", b"").decode("latin-1") or (query.get("since") or [""])[0]
    try:
        since = cursor_decode(cursor) if cursor else {}
    except ValueError:
        raise Refusal(400, "bad_cursor", "since / Last-Event-ID is not a cursor this server gave") from None
    return claims, groups, since


async def _stream(scope, receive, send, hub, claims, groups, since, cors):
    request = daphne.http_request(send)
    if request is not None:
        streaming.add(request.transport)  # a stream, not an unfinished handshake
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-cache"),
        (b"x-accel-buffering", b"no"),  # nginx (an Ingress) must not buffer the stream
        *cors,
    ]})
    sink = SseSink(send, groups, cursor_encode)
    subscriber = Subscriber(channel_name=f"sse!{id(sink)}", sink=sink, claims=claims)
    hub.attach(subscriber)
    metrics.SSE_STREAMS.inc()
    joins = asyncio.ensure_future(_join_all(hub, subscriber, groups, since))
    try:
        while subscriber.close_code is None:
            try:
                message = await asyncio.wait_for(receive(), settings.GROUPCAST_SSE_KEEPALIVE_SECONDS)
            except TimeoutError:
                sink.comment()
                continue
            if message["type"] == "http.disconnect":
                break
        else:
            await asyncio.wait_for(sink.ended(), 5)
    finally:
        joins.cancel()
        if hub.attached(subscriber):
            await hub.detach(subscriber)
        if subscriber.close_code is None:
            metrics.DISCONNECTS.labels("1000").inc()
        sink.stop()


async def _join_all(hub, subscriber, groups, since):
    for group in groups:
        try:
            await hub.join(group, subscriber, since=since.get(group))
        except Exception as error:  # Redis away: end the stream, the client resumes
            subscriber.send_error("unavailable", f"subscription failed, reconnect: {error}", group)
            subscriber.close(1011, "unavailable")
            return


def _error_body(code, message):
    return json.dumps({"error": {"code": code, "message": message}}).encode() + b"\n"


async def _respond(send, status, body, headers):
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
