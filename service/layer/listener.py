"""The layer's thread: this process's side of Redis for its channels and groups.

It runs on an event loop of its own, so memberships and pulls outlive whatever loop the
application calls from (Daphne's, runworker's, or a new one per `async_to_sync` call).
It holds:

- memberships: which of this process's channels are in which group, and one pub/sub
  subscription per such group on the group's host (service/storage/pubsub.py);
- the pullers: while a receiver waits on one of this process's channels, messages are
  taken off the channel's key in Redis (and only then: an idle consumer's key fills up
  and `send` raises ChannelFull, as with channels_redis);
- hand-over: a group message heard on pub/sub is written to the members' key in Redis,
  after whatever waits there, under the channels' capacity, then pulled like any other.
  One write per process and message, whatever the number of members.
"""

import asyncio
import atexit
import json
import logging
import random
import threading
import weakref

from service import metrics
from service.storage import wire
from service.storage.pubsub import Subscriptions
from service.tasks import cancel_and_wait

log = logging.getLogger("service.layer")

GROUP_MARK = "__groupcast_group__"

# every running Listener, so that the process can stop them all at exit
_running = weakref.WeakSet()


def stop_all(wait=False):
    """Stop every layer thread of the process (at exit, so none outlives its Redis)."""
    for listener in list(_running):
        listener.stop_soon()
    if wait:
        for listener in list(_running):
            listener.thread.join(timeout=5)


atexit.register(stop_all)


class Listener:
    def __init__(self, layer):
        # A proxy: a layer the application drops is collected, and its thread stopped
        # (GroupcastChannelLayer.listener registers stop_soon as its finalizer).
        self.layer = weakref.proxy(layer)
        self.memberships = {}  # group -> set of this process's channels
        self.memberships_lock = threading.Lock()  # changed here, read from any thread
        self.subscriptions = {}  # host index -> Subscriptions (on the layer's loop)
        self.demand = {}  # real channel -> receivers waiting
        self.pulling = set()  # real channels with a puller running or about to
        self.pullers = {}  # real channel -> task
        self.demand_lock = threading.Lock()
        self.connections = layer.connection_set(self.layer)  # the layer's loop's own
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="groupcast-layer", daemon=True)
        self.thread.start()
        _running.add(self)

    def _serve(self):
        try:
            self.loop.run_forever()
        finally:
            _running.discard(self)

    # Calls from the application's loops

    async def call(self, coroutine):
        """Run `coroutine` on the layer's loop and wait for it from the caller's."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self.loop))

    async def receive(self, channel):
        real = self.layer.non_local_name(channel)
        with self.demand_lock:
            self.demand[real] = self.demand.get(real, 0) + 1
            start = real not in self.pulling
            self.pulling.add(real)
        if start:  # one wake-up of the layer's loop, not one per waiting receiver
            self.loop.call_soon_threadsafe(self._pull, real)
        try:
            return await self.layer.mailboxes.get(channel)
        finally:
            with self.demand_lock:
                self.demand[real] -= 1

    def members(self, group):
        """This process's channels in `group` (from any thread)."""
        with self.memberships_lock:
            return sorted(self.memberships.get(group, ()))

    def idle(self):
        with self.demand_lock:
            waiting = any(self.demand.values())
        return not waiting and not self.memberships

    def stop_soon(self):
        """Stop the thread without waiting for it (from a finalizer, on any thread)."""
        if self.loop.is_closed():
            return
        try:
            self.loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._stop_loop()))
        except RuntimeError:  # the loop stopped meanwhile
            pass

    async def _stop_loop(self):
        await cancel_and_wait(self.pullers.values())
        for subscriptions in self.subscriptions.values():
            await subscriptions.close()
        self.loop.stop()

    def stop(self):
        """Stop the thread; memberships and subscriptions end with it."""
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
        future.result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()

    # On the layer's loop

    async def join(self, group, channel):
        with self.memberships_lock:
            members = self.memberships.setdefault(group, set())
            first = not members
            members.add(channel)
        if first:
            try:
                await self._subscriptions(self.layer.group_host(group)).subscribe(self._group_channel(group))
            except BaseException:
                with self.memberships_lock:
                    members.discard(channel)
                    if not members:
                        self.memberships.pop(group, None)
                raise

    async def leave(self, group, channel):
        with self.memberships_lock:
            members = self.memberships.get(group)
            if members is None or channel not in members:
                return
            members.discard(channel)
            last = not members
            if last:
                del self.memberships[group]
        if last:
            await self._subscriptions(self.layer.group_host(group)).unsubscribe(self._group_channel(group))

    async def forget_all(self):
        for group in list(self.memberships):
            for channel in list(self.memberships.get(group, ())):
                await self.leave(group, channel)

    def _group_channel(self, group):
        return self.layer.group_channel(group).encode()

    def _subscriptions(self, index):
        subscriptions = self.subscriptions.get(index)
        if subscriptions is None:
            subscriptions = self.subscriptions[index] = Subscriptions(
                self.layer.link_topology(index), on_message=self._heard, on_link=self._link_changed
            )
        return subscriptions

    @staticmethod
    def _link_changed(link, error):
        if error is not None:
            metrics.REDIS_ERRORS.labels("layer").inc()

    async def _heard(self, channel, payload):
        """A message on a group's pub/sub channel: hand it to the local members."""
        group = self.layer.group_of(channel.decode())
        members = self.members(group)
        if not members or not payload:
            return
        kind = payload[0]
        if kind == wire.EVENT:
            origin, serialized = wire.event_parts(payload)
            if origin == self.layer.client_prefix:
                return  # sent from this process, which served its members already
            message = self.layer.deserialize(serialized)
        elif kind == wire.ANNOUNCEMENT:
            offset, data_json = wire.announcement_parts(payload)
            message = {"type": "groupcast.message", "group": group, "offset": offset, "data": json.loads(data_json)}
        elif kind == wire.DISCARD:
            await self.leave(group, wire.body(payload).decode())
            return
        else:
            return
        await self.layer.hand_to_members(group, members, message)

    def _pull(self, real):
        task = self.pullers.get(real)
        if task is None or task.done():
            self.pullers[real] = asyncio.ensure_future(self._pull_while_wanted(real))

    async def _pull_while_wanted(self, real):
        delay = 0.1
        while True:
            with self.demand_lock:
                if not self.demand.get(real):
                    self.demand.pop(real, None)
                    self.pulling.discard(real)
                    return
            try:
                popped = await self.layer.pop_with_backup(real, timeout=self.layer.brpop_timeout)
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if asyncio._get_running_loop() is None:
                    # Closed outside its loop (the loop was closed under it, or the
                    # interpreter is exiting): redis-py's clean-up raised in place of
                    # GeneratorExit. Nothing to retry on.
                    raise
                metrics.REDIS_ERRORS.labels("layer").inc()
                log.warning("receiving from Redis failed (%s); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay * (0.5 + random.random()))  # back off, jittered
                delay = min(delay * 2, 5.0)
                continue
            if popped is not None:
                target, message = popped
                targets = target if isinstance(target, list) else [target]
                group = message.pop(GROUP_MARK, None)
                if group is not None:
                    # sent through the group's Redis set as well: the members here got
                    # it over pub/sub already
                    members = self.members(group)
                    targets = [channel for channel in targets if channel not in members]
                if targets:
                    self.layer.mailboxes.put(targets, message)

    async def _shutdown(self):
        await cancel_and_wait(self.pullers.values())
        for subscriptions in list(self.subscriptions.values()):
            await subscriptions.close()
        self.subscriptions.clear()
        with self.memberships_lock:
            self.memberships.clear()
        await self.layer.close_loop_pools()

