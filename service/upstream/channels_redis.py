"""channels_redis's RedisChannelLayer, with names for the internals groupcast's layer
builds on (channels_redis 4.3.0, channels_redis/core.py).

Everything here keeps channels_redis's Redis layout exactly (keys, message format,
backup queues), so processes running channels_redis and groupcast can share a Redis.
"""

import asyncio
import collections
import logging
import time

from channels_redis.core import RedisChannelLayer as UpstreamLayer
from channels_redis.core import RedisLoopLayer

# channels_redis's logger, so its "over capacity" lines come out the same
log = logging.getLogger("channels_redis.core")

# core.py group_send: deliver to each process key while it is under capacity
SEND_TO_KEYS = """
local over_capacity = 0
local current_time = ARGV[#ARGV - 1]
local expiry = ARGV[#ARGV]
for i=1,#KEYS do
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[i + #KEYS]) then
        redis.call('ZADD', KEYS[i], current_time, ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""
# The same, for a message handed on by this process: scored after everything already
# waiting on the key, so it cannot overtake an earlier send whatever the clocks say.
SEND_TO_KEYS_IN_ORDER = SEND_TO_KEYS.replace(
    "redis.call('ZADD', KEYS[i], current_time, ARGV[i])",
    """local last = redis.call('ZRANGE', KEYS[i], -1, -1, 'WITHSCORES')[2]
        local score = tonumber(current_time)
        if last and tonumber(last) >= score then score = tonumber(last) + 0.0001 end
        redis.call('ZADD', KEYS[i], score, ARGV[i])""",
)


class RedisChannelLayer(UpstreamLayer):
    """channels_redis's layer, its internals given names."""

    def own_connections(self):
        """The running loop's connections when the layer keeps them itself; None for
        core.py's own per-loop set (which patches the loop's close() to hold the layer)."""
        return None

    def loop_connections_closing(self, loop):
        """Connections a subclass keeps per loop in place of core.py's, taken off for
        closing (None when it keeps none for `loop`)."""
        return None

    def connection(self, index):
        """core.py connection(), through own_connections() where there are some."""
        connections = self.own_connections()
        if connections is not None:
            return connections.get_connection(index)
        return super().connection(index)

    def is_process_local(self, channel):
        """True for a channel made by this layer's new_channel() (core.py: the
        `<prefix>.<client_prefix>!<id>` names whose messages share one Redis key)."""
        return "!" in channel and self.non_local_name(channel).endswith(self.client_prefix + "!")

    def channel_key(self, channel):
        """The Redis key holding a channel's messages (core.py send)."""
        return self.prefix + (self.non_local_name(channel) if "!" in channel else channel)

    def channel_host(self, channel):
        """The host index of a channel's key (core.py send, for process-local channels)."""
        return self.consistent_hash(self.non_local_name(channel) if "!" in channel else channel)

    def group_key(self, group):
        """The sorted set of a group's members, as channels_redis keeps them (core.py _group_key)."""
        return self._group_key(group)

    def group_host(self, group):
        """The host index of a group (core.py group_add/group_send)."""
        return self.consistent_hash(group)

    async def pop_with_backup(self, real_channel, timeout):
        """(target channel or channels, message) popped off a process channel's key, or
        None after `timeout` seconds; a cancellation loses nothing (core.py
        receive_single: the backup queue and its cleaning, awaited here in line)."""
        index = self.consistent_hash(real_channel)
        key = self.prefix + real_channel
        member = await self._brpop_with_clean(index, key, timeout=timeout)
        if member is None:
            return None
        await self._clean_receive_backup(index, key)
        message = self.deserialize(member)
        target = message.pop("__asgi_channel__", real_channel)
        return target, message

    async def send_to_members(self, group, channel_names, message, *, extra=None, in_order=False):
        """Deliver `message` to `channel_names` the way core.py group_send does: one
        message per Redis key carrying its channels, skipped (and logged) where the key
        is at capacity; return how many keys were over capacity. `extra(channel_names)`
        may add fields to a key's message; `in_order` scores it after what is waiting."""
        by_host = collections.defaultdict(list)
        messages, capacities = {}, {}
        over_capacity = 0
        for channel in channel_names:
            key = self.channel_key(channel)
            if key not in messages:
                messages[key] = dict(message, __asgi_channel__=[])
                capacities[key] = self.get_capacity(channel)
                by_host[self.channel_host(channel)].append(key)
            messages[key]["__asgi_channel__"].append(channel)
        for index, keys in by_host.items():
            connection = self.connection(index)
            now = time.time()
            async with connection.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.zremrangebyscore(key, min=0, max=int(now) - int(self.expiry))
                await pipe.execute()
            payloads = []
            for key in keys:
                fields = messages[key]
                if extra is not None:
                    fields.update(extra(fields["__asgi_channel__"]))
                payloads.append(self.serialize(fields))
            args = [*payloads, *(capacities[key] for key in keys), now, self.expiry]
            script = SEND_TO_KEYS_IN_ORDER if in_order else SEND_TO_KEYS
            over = await connection.eval(script, len(keys), *keys, *args)
            if over:
                log.info("%s of %s channels over capacity in group %s", over, len(channel_names), group)
                over_capacity += over
        return over_capacity

    def connection_set(self, layer):
        """A set of connections, one per host, made as core.py makes them per loop."""
        return RedisLoopLayer(layer)

    async def close_loop_pools(self):
        """Close this event loop's connections only (core.py close_pools closes every
        loop's, which is unsafe while another thread's loop uses its own)."""
        loop = asyncio.get_running_loop()
        cleaners = [c for c in self.receive_cleaners if c.get_loop() is loop]
        if cleaners:
            await asyncio.wait(cleaners)
        pools = self._layers.pop(loop, None) or self.loop_connections_closing(loop) or self.own_connections()
        if pools is not None:
            await pools.flush()
