"""GroupcastChannelLayer: channels_redis's RedisChannelLayer with O(1) groups.

`send`, `receive` and `new_channel` are channels_redis's own. Groups change: a channel
of this process that joins a group is a member here, in this process's memory, and
`group_send` is one PUBLISH per group, whatever its size; every process with members
delivers to them locally (service/fanout.py). A channel added to a group from another
process is kept in Redis exactly as channels_redis does and still receives, so every
behaviour the Channels documentation gives groups holds across processes.

Receiving on this process's channels changes too: one task per process pulls the
process's share of Redis into local buffers, and each receive() just waits on its own
buffer. Local deliveries land in the same buffers, so a waiting consumer wakes for
either (channels_redis's receive() would sit in BZPOPMIN and miss a local delivery).

groupcast's own WebSocket consumers attach a Subscriber to their channel; messages
published to their groups are then written to the socket directly, framed once per
process, instead of travelling through the channel.
"""

import asyncio
import collections
import logging
import os
import socket
import uuid
import weakref

import redis.asyncio.retry
from redis.backoff import NoBackoff

from channels_redis.core import RedisChannelLayer
from django.conf import settings
from service import keys, metrics
from service.fanout import DISCARD, EVENT, Fanout
from service.mailbox import Mailbox
from service.store import channel_layer_host, make_async

log = logging.getLogger(__name__)


class GroupcastChannelLayer(RedisChannelLayer):
    extensions = ["groups", "flush", "groupcast"]

    def __init__(self, redis_url=None, hosts=None, prefix="gc", **kwargs):
        self.redis_url = redis_url
        super().__init__(
            hosts=hosts or [channel_layer_host(redis_url)], prefix=f"{prefix}:layer:", **kwargs
        )
        self.process_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.subscribers = {}
        self._fanouts = weakref.WeakKeyDictionary()
        # per event loop: {non-local channel name: task pulling it from Redis}
        self._pullers = weakref.WeakKeyDictionary()
        # this process's channels: one Mailbox each, not channels_redis's asyncio.Queue
        self.receive_buffer = collections.defaultdict(Mailbox)

    def match_type_and_length(self, name):
        # groupcast's group names run to 100 characters; Channels stops at 99.
        return isinstance(name, str) and len(name) <= 100

    def fanout(self):
        """This process's fan-out for the running event loop, started on first use."""
        loop = asyncio.get_running_loop()
        fanout = self._fanouts.get(loop)
        if fanout is None:
            # No silent retries on the subscriber link: a lost link must be seen, so
            # that the gap it leaves is replayed from history. Commands (history,
            # presence) go through an ordinary client that reconnects by itself.
            link = make_async(
                self.redis_url,
                retry=redis.asyncio.retry.Retry(NoBackoff(), 0),
                health_check_interval=0,
            )
            fanout = self._fanouts[loop] = Fanout(
                client=make_async(self.redis_url),
                link=link,
                process_id=self.process_id,
                deliver_event=self.deliver_local,
                deserialize=self.deserialize,
            )
            fanout.start()
            self._export_gauges(fanout)
        return fanout

    # Receiving

    async def receive(self, channel):
        """Receive the next message on `channel` (normal channels: channels_redis's own)."""
        assert self.require_valid_channel_name(channel)
        if "!" not in channel:
            return await super().receive(channel)
        assert self._is_local(channel), "Wrong client prefix"
        self._start_puller(self.non_local_name(channel))
        mailbox = self.receive_buffer[channel]
        try:
            return await mailbox.get()
        finally:
            if mailbox.idle() and self.receive_buffer.get(channel) is mailbox:
                del self.receive_buffer[channel]

    def _start_puller(self, real_channel):
        pullers = self._pullers.setdefault(asyncio.get_running_loop(), {})
        if real_channel not in pullers:
            pullers[real_channel] = asyncio.ensure_future(self._pull(real_channel))

    async def _pull(self, real_channel):
        """Move messages sent to this process's channels from Redis into their buffers."""
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        delay = 0.1
        while self._pullers.get(loop, {}).get(real_channel) is me:
            try:
                target, message = await self.receive_single(real_channel)
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if self._pullers.get(loop, {}).get(real_channel) is not me:
                    return  # the layer was closed under us
                log.warning("receiving from Redis failed (%s); retrying in %.1fs", error, delay)
                await asyncio.sleep(delay)  # back off while Redis is away
                delay = min(delay * 2, 5.0)
                continue
            for channel in target if isinstance(target, list) else [target]:
                self.deliver_local(channel, message)

    def _is_local(self, channel):
        return "!" in channel and self.non_local_name(channel).endswith(self.client_prefix + "!")

    def deliver_local(self, channel, message):
        """Put an event into one of this process's channels, as its receive loop would."""
        mailbox = self.receive_buffer[channel]
        if mailbox.qsize() >= self.capacity:
            metrics.DROPPED.labels("channel_full").inc()
            return
        mailbox.put_nowait(message)

    # Groups

    async def group_add(self, group, channel, *, since=None):
        """Add `channel` to `group`. For a groupcast WebSocket, `since` also replays what
        it missed after that offset before live delivery starts."""
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        if not self._is_local(channel):
            return await super().group_add(group, channel)
        subscriber = self.subscribers.get(channel)
        if subscriber is not None:
            await self.fanout().join(group, subscriber, since=since)
        else:
            await self.fanout().add_channel(group, channel)

    async def group_discard(self, group, channel):
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        if self._is_local(channel):
            subscriber = self.subscribers.get(channel)
            if subscriber is not None:
                await self.fanout().leave(group, subscriber)
            else:
                await self.fanout().discard_channel(group, channel)
            return
        await super().group_discard(group, channel)
        # It may be another process's member: ask that process to drop it.
        await self._publish(group, bytes([DISCARD]) + channel.encode())

    async def group_send(self, group, message):
        """One PUBLISH, whatever the group's size (plus the channels_redis path only for
        members that were added from another process)."""
        assert self.require_valid_group_name(group), "Group name not valid"
        remote_members = await self._publish(
            group, bytes([EVENT]) + self.serialize(message), count_remote=True
        )
        if remote_members:
            await super().group_send(group, message)

    async def _publish(self, group, payload, count_remote=False):
        connection = self.connection(self.consistent_hash(group))
        async with connection.pipeline(transaction=False) as pipe:
            pipe.publish(keys.fanout_channel(group), payload)
            if count_remote:
                pipe.zcard(self._group_key(group))
            replies = await pipe.execute()
        return replies[1] if count_remote else None

    # groupcast WebSocket subscribers

    def attach(self, subscriber):
        self.subscribers[subscriber.channel_name] = subscriber

    async def detach(self, subscriber):
        """Forget a closed WebSocket: leave its groups and drop its channel's buffer."""
        self.subscribers.pop(subscriber.channel_name, None)
        fanout = self.fanout()
        for group in list(subscriber.groups):
            await fanout.leave(group, subscriber)
        for state in list(fanout.groups.values()):
            if subscriber in state.joining:
                await fanout.leave(state.name, subscriber)
        self.receive_buffer.pop(subscriber.channel_name, None)

    async def close_pools(self):
        pullers = self._pullers.pop(asyncio.get_running_loop(), {})
        for task in pullers.values():
            task.cancel()
        if pullers:
            # redis-py can swallow a cancellation that lands mid-command; a puller that
            # survives it exits once the pools below are closed under it.
            await asyncio.wait(pullers.values(), timeout=1.0)
        for fanout in list(self._fanouts.values()):
            await fanout.close()
        self._fanouts.clear()
        await super().close_pools()

    def _export_gauges(self, fanout):
        metrics.declare_role("socket")
        gauges = metrics.role_gauges("socket")
        gauges.connection_limit.set(settings.GROUPCAST_MAX_CONNECTIONS)
        gauges.connections.set_function(lambda: len(self.subscribers))
        gauges.subscriptions.set_function(
            lambda: sum(len(state.subscribers) + len(state.catching_up) for state in fanout.groups.values())
        )
        gauges.groups_local.set_function(lambda: len(fanout.groups))
        loop = asyncio.get_running_loop()  # the scrape may run on another thread
        gauges.event_loop_tasks.set_function(lambda: len(asyncio.all_tasks(loop)))
        gauges.send_queue_depth.set_function(
            lambda: max((s.sink.pending() for s in self.subscribers.values()), default=0)
        )
