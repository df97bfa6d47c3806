"""GroupcastChannelLayer: channels_redis's RedisChannelLayer with O(1) groups.

`send`, `receive` and `new_channel` are channels_redis's own. Groups change: a channel
of this process that joins a group is a member here, in this process's hub, and
`group_send` is one PUBLISH per group, whatever its size; every process with members
delivers to them locally (service/socket/fanout.py). A channel added to a group from
another process is kept in Redis exactly as channels_redis does and still receives, so
every behaviour the Channels documentation gives groups holds across processes.

Receiving on this process's channels changes too: one task per process pulls the
process's share of Redis into local mailboxes, and each receive() just waits on its own
mailbox. Local deliveries land in the same mailboxes, so a waiting consumer wakes for
either (channels_redis's receive() would sit in BZPOPMIN and miss a local delivery).
"""

import asyncio
import logging
import os
import socket
import uuid
import weakref

from service import metrics
from service.socket.hub import Hub
from service.socket.mailbox import Mailbox
from service.storage import keys, wire
from service.storage.clients import channel_layer_host
from service.upstream.channels_redis import RedisChannelLayer

log = logging.getLogger(__name__)


class GroupcastChannelLayer(RedisChannelLayer):
    extensions = ["groups", "flush", "groupcast"]
    # this process's channels: one Mailbox each, not channels_redis's asyncio.Queue
    mailbox_class = Mailbox

    def __init__(self, redis_url=None, hosts=None, prefix="gc", **kwargs):
        self.redis_url = redis_url
        super().__init__(
            hosts=hosts or [channel_layer_host(redis_url)], prefix=f"{prefix}:layer:", **kwargs
        )
        self.process_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._hubs = weakref.WeakKeyDictionary()
        # per event loop: {non-local channel name: task pulling it from Redis}
        self._pullers = weakref.WeakKeyDictionary()

    def match_type_and_length(self, name):
        # groupcast's group names run to 100 characters; Channels stops at 99.
        return isinstance(name, str) and len(name) <= 100

    def hub(self):
        """This process's hub for the running event loop, started on first use."""
        loop = asyncio.get_running_loop()
        hub = self._hubs.get(loop)
        if hub is None:
            hub = self._hubs[loop] = Hub(redis_url=self.redis_url, process_id=self.process_id, channels=self)
            hub.start()
        return hub

    # Receiving

    async def receive(self, channel):
        """Receive the next message on `channel` (normal channels: channels_redis's own)."""
        assert self.require_valid_channel_name(channel)
        if "!" not in channel:
            return await super().receive(channel)
        assert self.is_process_local(channel), "Wrong client prefix"
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
        """Move messages sent to this process's channels from Redis into their mailboxes."""
        loop = asyncio.get_running_loop()
        me = asyncio.current_task()
        delay = 0.1
        while self._pullers.get(loop, {}).get(real_channel) is me:
            try:
                target, message = await self.receive_from_redis(real_channel)
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

    def deliver_local(self, channel, message):
        """Put an event into one of this process's channels, as its receive loop would."""
        mailbox = self.receive_buffer[channel]
        if mailbox.qsize() >= self.capacity:
            metrics.DROPPED.labels("channel_full").inc()
            return
        mailbox.put_nowait(message)

    def forget(self, channel):
        """Drop a closed channel's mailbox and whatever is still in it."""
        self.receive_buffer.pop(channel, None)

    # Groups

    async def group_add(self, group, channel):
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        if not self.is_process_local(channel):
            return await super().group_add(group, channel)
        hub = self.hub()
        subscriber = hub.subscribers.get(channel)
        if subscriber is not None:
            await hub.join(group, subscriber)
        else:
            await hub.fanout.add_channel(group, channel)

    async def group_discard(self, group, channel):
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        if self.is_process_local(channel):
            hub = self.hub()
            subscriber = hub.subscribers.get(channel)
            if subscriber is not None:
                await hub.leave(group, subscriber)
            else:
                await hub.fanout.discard_channel(group, channel)
            return
        await super().group_discard(group, channel)
        # It may be another process's member: ask that process to drop it.
        await self._publish(group, wire.discard(channel))

    async def group_send(self, group, message):
        """One PUBLISH, whatever the group's size (plus the channels_redis path only for
        members that were added from another process)."""
        assert self.require_valid_group_name(group), "Group name not valid"
        remote_members = await self._publish(group, wire.event(self.serialize(message)), count_remote=True)
        if remote_members:
            await super().group_send(group, message)

    async def _publish(self, group, payload, count_remote=False):
        async with self.group_connection(group).pipeline(transaction=False) as pipe:
            pipe.publish(keys.fanout_channel(group), payload)
            if count_remote:
                pipe.zcard(self.group_key(group))
            replies = await pipe.execute()
        return replies[1] if count_remote else None

    async def close_pools(self):
        pullers = self._pullers.pop(asyncio.get_running_loop(), {})
        for task in pullers.values():
            task.cancel()
        if pullers:
            # redis-py can swallow a cancellation that lands mid-command; a puller that
            # survives it exits once the pools below are closed under it.
            await asyncio.wait(pullers.values(), timeout=1.0)
        for hub in list(self._hubs.values()):
            await hub.close()
        self._hubs.clear()
        await super().close_pools()
