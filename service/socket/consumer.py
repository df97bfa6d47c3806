"""The WebSocket consumer: one client speaking the groupcast protocol.

connect: check the origin and the token, then accept. Each text frame is a subscribe,
unsubscribe, publish, refresh or ping; anything else is answered with an error frame and
the connection stays open. A subscribe needs the token's permission and, with a subscribe
proxy, the application's (service/socket/subscribe_proxy.py). Membership goes through the
process's hub, whose fan-out writes published messages straight to this client's socket.
"""

import logging
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from service import logs, metrics
from service.socket import events, subscribe_proxy
from service.socket.hub import current_hub
from service.socket.inbox import ClientInbox
from service.socket.frames import (
    PONG,
    FrameError,
    parse_client_frame,
    published_frame,
    refreshed_frame,
    unsubscribed_frame,
)
from service.socket.sinks import sink_for
from service.socket.subscribers import BAD_TOKEN, FORBIDDEN, TOO_LARGE, TOO_SLOW, Subscriber
from service.storage.clients import REDIS_FAILURES
from service.storage.publishing import apublish_encoded
from service.tokens import TokenError, token_verify
from service.upstream.channels import LeanDispatch

log = logging.getLogger(__name__)


class GroupcastConsumer(LeanDispatch, AsyncWebsocketConsumer):
    subscriber = None
    hub = None
    inbox_counts_frames = False

    async def __call__(self, scope, receive, send):
        # Under the socket server the client's frames are counted as they arrive, by the
        # inbox `receive` reads (service/socket/inbox.py); elsewhere, here.
        self.inbox_counts_frames = isinstance(getattr(receive, "__self__", None), ClientInbox)
        # Every log line of this connection (its task and what it awaits) carries its id.
        logs.connection_id.set(logs.new_connection_id())
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the consumer ends (even by an exception), it leaves its groups.
            if self.subscriber is not None and self.hub.attached(self.subscriber):
                await self.hub.detach(self.subscriber)

    async def connect(self):
        """Called on the WebSocket handshake."""
        if not origin_allowed(self.scope):
            metrics.DISCONNECTS.labels("403").inc()
            await self.close()  # before accept: the handshake is refused with HTTP 403
            return
        self.hub = current_hub()
        try:
            claims = token_verify(query_token(self.scope))
        except TokenError as error:
            claims, refusal = None, (BAD_TOKEN, "bad_token", str(error))
        else:
            refusal = self.hub.refusal()
        await self.accept()
        self.subscriber = Subscriber(
            channel_name=self.channel_name,
            sink=sink_for(self.base_send),
            claims=claims,
        )
        if refusal:
            code, error_code, message = refusal
            self.subscriber.send_error(error_code, message)
            self.subscriber.close(code, message)
            return
        self.hub.attach(self.subscriber)
        events.emit("connect", sub=self.subscriber.sub)

    async def receive(self, text_data=None, bytes_data=None):
        """Called with each frame from the client."""
        subscriber = self.subscriber
        if subscriber is None or subscriber.closing:
            return
        if not self.inbox_counts_frames and not subscriber.allow_frame():
            # (the inbox reports its own floods: groupcast_flooded)
            await self.groupcast_flooded(None)
            return
        if text_data is None:
            subscriber.send_error("bad_frame", "binary frames are not supported")
            return
        if len(text_data) > settings.GROUPCAST_MAX_FRAME_BYTES:
            subscriber.close(TOO_LARGE, "frame too large")
            return
        try:
            frame = parse_client_frame(text_data)
        except FrameError as error:
            subscriber.send_error(error.code, error.message, error.group)
            return
        if frame.type == "ping":
            subscriber.send(PONG)
        elif frame.type == "subscribe":
            await self.subscribe(frame.group, frame.since, frame.presence, frame.join_leave)
        elif frame.type == "unsubscribe":
            await self.unsubscribe(frame.group)
        elif frame.type == "publish":
            await self.publish(frame.group, frame.data_json)
        else:
            await self.refresh(frame.token)

    async def subscribe(self, group, since, presence, join_leave):
        subscriber = self.subscriber
        if not subscriber.may_subscribe(group):
            subscriber.send_error("forbidden", "the token does not allow this group", group)
            subscriber.close(FORBIDDEN, "group not in token")
            return
        if group in subscriber.groups:
            subscriber.send_error("already_subscribed", "already subscribed", group)
            return
        if len(subscriber.groups) >= settings.GROUPCAST_MAX_SUBSCRIPTIONS:
            subscriber.send_error(
                "too_many_subscriptions",
                f"at most {settings.GROUPCAST_MAX_SUBSCRIPTIONS} subscriptions per connection",
                group,
            )
            return
        proxy = self.hub.subscribe_proxy
        if proxy is not None:
            answer = await proxy.ask(subscriber, group)
            if subscriber.closing:  # closed (a drain, the API) while the proxy was asked
                return
            if answer == subscribe_proxy.FORBIDDEN:
                subscriber.send_error("forbidden", "the application does not allow this group", group)
                return
            if answer != subscribe_proxy.ALLOWED:
                subscriber.send_error("unavailable", "could not check this subscription, try again", group)
                return
        try:
            await self.hub.join(group, subscriber, since=since, presence=presence, join_leave=join_leave)
        except (*REDIS_FAILURES, ConnectionError, TimeoutError) as error:
            log.warning("subscribe to %s failed: %s", group, error)  # expected while Redis is away
            subscriber.send_error("unavailable", "subscription failed, try again", group)
            return
        events.emit("subscribe", sub=subscriber.sub, group=group)

    async def unsubscribe(self, group):
        if group in self.subscriber.groups:
            await self.hub.leave(group, self.subscriber)
            events.emit("unsubscribe", sub=self.subscriber.sub, group=group)

    async def publish(self, group, data_json):
        """A message from the client, allowed by its token's `publish` claim: stored and
        delivered like an HTTP publish."""
        subscriber = self.subscriber
        if not subscriber.may_publish(group):
            metrics.CLIENT_PUBLISHES.labels("forbidden").inc()
            subscriber.send_error("forbidden", "the token does not allow publishing to this group", group)
            return
        try:
            offset = await apublish_encoded(group=group, data_json=data_json)
        except (*REDIS_FAILURES, ConnectionError, TimeoutError) as error:
            log.warning("client publish to %s failed: %s", group, error)
            metrics.CLIENT_PUBLISHES.labels("failed").inc()
            subscriber.send_error("unavailable", "not published, try again", group)
            return
        metrics.labelled(metrics.CLIENT_PUBLISHES, "published").inc()
        subscriber.send(published_frame(group, offset))

    async def refresh(self, token):
        """A new token for the same sub, before the current one expires."""
        subscriber = self.subscriber
        try:
            claims = token_verify(token)
        except TokenError as error:
            metrics.TOKEN_REFRESHES.labels("refused").inc()
            subscriber.send_error("bad_token", str(error))
            return
        if claims.sub != subscriber.sub:
            metrics.TOKEN_REFRESHES.labels("refused").inc()
            subscriber.send_error("forbidden", "a refreshed token must be for the same sub")
            return
        subscriber.claims = claims
        self.hub.expiries.schedule(subscriber)
        for group in sorted(subscriber.groups):
            if not claims.groups.allows(group):
                await self.hub.leave(group, subscriber)
                subscriber.send(unsubscribed_frame(group, "token"))
        metrics.TOKEN_REFRESHES.labels("refreshed").inc()
        subscriber.send(refreshed_frame(claims.exp))

    async def disconnect(self, code):
        """Called when the socket closes, whoever closed it."""
        subscriber = self.subscriber
        if subscriber is None:
            return
        if subscriber.close_code is None:  # not our close (those count themselves)
            metrics.labelled(metrics.DISCONNECTS, str(subscriber.sink.closed_with or code)).inc()
        if self.hub.attached(subscriber):
            await self.hub.detach(subscriber)
            events.emit("disconnect", sub=subscriber.sub)
        stop = getattr(subscriber.sink, "stop", None)
        if stop:
            stop()

    async def groupcast_flooded(self, message):
        """Called, in order behind its earlier frames, when the client went over its
        frame rate (service/socket/inbox.py); its later frames were dropped on arrival."""
        subscriber = self.subscriber
        if subscriber is not None and not subscriber.closing:
            subscriber.send_error("rate_limited", "too many frames")
            subscriber.close(TOO_SLOW, "rate limited")

    def unknown_event(self, message):
        """Called with a Channels event this consumer has no handler for: counted, not fatal."""
        metrics.DROPPED.labels("unknown_event").inc()


def query_token(scope):
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else ""


def origin_allowed(scope):
    """Browsers send Origin and must be listed; clients without one (servers, apps)
    authenticate by token alone."""
    origin = dict(scope.get("headers", [])).get(b"origin")
    if origin is None:
        return True
    allowed = settings.GROUPCAST_ALLOWED_ORIGINS
    return "*" in allowed or origin.decode("latin-1") in allowed
