"""The hub: one socket process's live state, and the one place that owns it.

It holds the WebSocket subscribers of the process, the fan-out that feeds them from
Redis, the presence counts it mirrors there, the subscribe proxy, the socket gauges, and
whether the process is draining. Consumers, the drain and the probes talk to the hub
(`current_hub()`: the hub of the running event loop, which under Daphne is the process's
one loop).
"""

import asyncio
import json
import logging
import os
import socket
import uuid
import weakref

from django.conf import settings

from service import metrics
from service.socket import frames
from service.socket.expiry import Expiries
from service.socket.fanout import Fanout
from service.socket.rebalance import Rebalancer
from service.socket.subscribe_proxy import subscribe_proxy_from_settings
from service.socket.subscribers import DISCONNECTED, RESTARTING, TRY_AGAIN_LATER
from service.storage.clients import link_topology, make_async
from service.storage.presence import Presence

log = logging.getLogger(__name__)


_hubs = weakref.WeakKeyDictionary()


def current_hub():
    """The hub of the running event loop, started on first use."""
    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        process_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        hub = _hubs[loop] = Hub(redis_url=settings.REDIS_URL, process_id=process_id)
        hub.start()
    return hub


async def close_current_hub():
    """Stop the running loop's hub (its Redis links, its presence), if it has one."""
    hub = _hubs.pop(asyncio.get_running_loop(), None)
    if hub is not None:
        await hub.close()


class Hub:
    """This process's subscribers, fan-out, presence, gauges and drain state."""

    def __init__(self, *, redis_url, process_id):
        self.process_id = process_id
        # channel name -> Subscriber, for every open groupcast WebSocket of the process
        self.subscribers = {}
        # sub -> its subscribers here (the API disconnects and unsubscribes by sub)
        self.by_sub = {}
        self.expiries = Expiries()
        # set on SIGTERM: the process refuses newcomers and is closing its connections
        self.draining = False
        # the application's say on subscribes (None without GROUPCAST_SUBSCRIBE_PROXY_URL);
        # its slots bound the requests this process has in flight
        self.subscribe_proxy = subscribe_proxy_from_settings()
        # Commands (history, presence) go through an ordinary client that reconnects by
        # itself; the pub/sub links see every loss (link_topology).
        client = make_async(redis_url)
        self.presence = Presence(client, process_id)
        self.fanout = Fanout(client=client, topology=link_topology(redis_url, client), presence=self.presence)
        self.fanout.on_control = self._control
        self.rebalancer = Rebalancer(self)
        self.presence.connections = lambda: len(self.subscribers)
        self.presence.after_beat = self.rebalancer.after_beat

    def start(self):
        self.fanout.start()
        self.presence.start()
        self.expiries.start()
        self._export_gauges()

    async def close(self):
        self.expiries.stop()
        await self.fanout.close()
        await self.presence.close(draining=self.draining)
        await self.fanout.client.aclose()

    @property
    def linked(self):
        """True while the process's Redis links are up (groups are live)."""
        return self.fanout.linked

    # Connections

    def refusal(self):
        """Why a new connection cannot be admitted now, as (close code, error code,
        message), or None."""
        if self.draining:
            return RESTARTING, "restarting", "server restarting, reconnect and resume with since"
        if len(self.subscribers) >= settings.GROUPCAST_MAX_CONNECTIONS:
            return TRY_AGAIN_LATER, "over_capacity", "server at its connection limit, try later"
        return None

    def attach(self, subscriber):
        self.subscribers[subscriber.channel_name] = subscriber
        self.by_sub.setdefault(subscriber.sub, set()).add(subscriber)
        self.expiries.schedule(subscriber)

    def attached(self, subscriber):
        return self.subscribers.get(subscriber.channel_name) is subscriber

    async def detach(self, subscriber):
        """Forget a closed WebSocket: leave every group it joined or was joining. A
        draining process leaves its members present: they come back elsewhere."""
        self.subscribers.pop(subscriber.channel_name, None)
        mine = self.by_sub.get(subscriber.sub)
        if mine is not None:
            mine.discard(subscriber)
            if not mine:
                del self.by_sub[subscriber.sub]
        fanout = self.fanout
        for group in list(subscriber.groups):
            await fanout.leave(group, subscriber, keep_presence=self.draining)
        for state in list(fanout.groups.values()):
            if subscriber in state.joining:
                await fanout.leave(state.name, subscriber, keep_presence=self.draining)

    # Groups

    async def join(self, group, subscriber, *, since=None, presence=False, join_leave=True):
        """Subscribe: `subscribed`, the history after `since`, then live messages."""
        await self.fanout.join(group, subscriber, since=since, presence=presence, join_leave=join_leave)

    async def leave(self, group, subscriber):
        await self.fanout.leave(group, subscriber)

    # Requests of the API, broadcast to every socket process

    def _control(self, payload):
        asyncio.ensure_future(self._serve_control(payload))

    async def _serve_control(self, payload):
        try:
            request = json.loads(payload)
            sub, reply = request["sub"], request["reply"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed control request")
            return
        targets = list(self.by_sub.get(sub, ()))
        done = 0
        if request.get("op") == "disconnect":
            for subscriber in targets:
                if not subscriber.closing:
                    subscriber.close(DISCONNECTED, "disconnected by the server")
                    done += 1
            metrics.API_DISCONNECTS.inc(done)
        elif request.get("op") == "unsubscribe":
            group = request.get("group")
            for subscriber in targets:
                if group in subscriber.groups:
                    await self.leave(group, subscriber)
                    subscriber.send(frames.unsubscribed_frame(group, "server"))
                    done += 1
        try:
            async with self.fanout.client.pipeline(transaction=False) as pipe:
                pipe.rpush(reply, done)
                pipe.expire(reply, 30)
                await pipe.execute()
        except Exception as error:
            log.warning("could not answer a control request: %s", error)

    def _export_gauges(self):
        metrics.declare_role("socket")
        gauges = metrics.role_gauges("socket")
        fanout = self.fanout
        gauges.connection_limit.set(settings.GROUPCAST_MAX_CONNECTIONS)
        gauges.connections.set_function(lambda: len(self.subscribers))
        gauges.subscriptions.set_function(
            lambda: sum(len(state.subscribers) + len(state.catching_up) for state in fanout.groups.values())
        )
        gauges.groups_local.set_function(lambda: len(fanout.groups))
        gauges.presence_members.set_function(lambda: len(self.presence.members_here))
        loop = asyncio.get_running_loop()  # the scrape may run on another thread
        gauges.event_loop_tasks.set_function(lambda: len(asyncio.all_tasks(loop)))
        gauges.send_queue_depth.set_function(
            lambda: max((s.sink.pending() for s in self.subscribers.values()), default=0)
        )
