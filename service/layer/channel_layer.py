"""GroupcastChannelLayer: channels_redis's RedisChannelLayer with O(1) groups.

Configured exactly like channels_redis (`hosts`, `prefix`, `expiry`, `group_expiry`,
`capacity`, `channel_capacity`, `symmetric_encryption_keys`), with its Redis layout, so
a fleet can move from one to the other process by process. What changes:

- A channel of this process that joins a group is a member in this process (the layer's
  thread holds the membership and one pub/sub subscription per group on the group's
  host), not an entry in Redis; `group_send` is one PUBLISH whatever the group's size,
  and each process with members writes the message once to its members' key in Redis,
  where it queues behind earlier sends, under capacity and expiry, like any message.
- A channel added to a group from another process (or belonging to a channels_redis
  process) is kept in Redis exactly as channels_redis does and still receives.
- Receiving on this process's channels goes through the layer's thread (listener.py),
  so it works from any event loop, one after another.
- It also runs on a Redis Cluster (`redis_url` of the redis+cluster:// form; cluster.py).
"""

import asyncio
import threading
import time
import uuid
import weakref

import redis.asyncio
from channels_redis.utils import create_pool

from service import metrics
from service.layer import cluster
from service.layer.listener import GROUP_MARK, Listener
from service.layer.mailboxes import Mailboxes
from service.storage import pubsub, wire
from service.storage.clients import channel_layer_host, host_db, is_cluster, link_topology
from service.upstream.channels_redis import RedisChannelLayer

# channels_redis client prefixes are 32 hex digits; ours start with a letter that is not
# hex, so any process can tell a groupcast process's channel from a channels_redis one.
CLIENT_PREFIX_MARK = "g"


class GroupcastChannelLayer(RedisChannelLayer):
    extensions = ["groups", "flush"]

    def __init__(self, hosts=None, prefix="asgi", *, redis_url=None, mixed_fleet=False, **kwargs):
        """`redis_url` may stand for `hosts` (one URL, groupcast's REDIS_URL forms).
        `mixed_fleet`: also record this process's memberships in Redis, for processes
        still running channels_redis (see README, "Adopting it")."""
        # on a cluster: the URL, for the cluster clients standing for the one "host"
        self.cluster_url = redis_url if redis_url is not None and is_cluster(redis_url) else None
        # the prefix of the groups' pub/sub channels (a cluster's key prefix is a hash tag)
        self.channel_prefix = prefix
        if self.cluster_url is not None:
            hosts = [{"address": "redis://cluster"}]  # named only, never connected to
            prefix = cluster.key_prefix(prefix)
        elif hosts is None and redis_url is not None:
            hosts = [channel_layer_host(redis_url)]
        super().__init__(hosts=hosts, prefix=prefix, **kwargs)
        self._cluster_loops = weakref.WeakKeyDictionary()  # loop -> ClusterConnections
        self.client_prefix = CLIENT_PREFIX_MARK + uuid.uuid4().hex[1:]
        self.mixed_fleet = mixed_fleet
        self.mailboxes = Mailboxes(self.capacity)
        self._listener = None
        self._listener_lock = threading.Lock()

    # The layer's thread

    def listener(self):
        with self._listener_lock:
            if self._listener is None:
                self._listener = Listener(self)
                weakref.finalize(self, self._listener.stop_soon)
            return self._listener

    def own_connections(self):
        listener = self._listener
        if listener is not None and asyncio.get_running_loop() is listener.loop:
            return listener.connections
        return None

    def host_db(self, index):
        return 0 if self.cluster_url else host_db(self.hosts[index])

    def connection(self, index):
        if self.cluster_url is None:
            return super().connection(index)
        connections = self.own_connections()
        if connections is None:
            loop = asyncio.get_running_loop()
            connections = self._cluster_loops.get(loop)
            if connections is None:
                connections = self._cluster_loops[loop] = cluster.ClusterConnections(self.cluster_url)
        return connections.get_connection(index)

    def loop_connections_closing(self, loop):
        return self._cluster_loops.pop(loop, None)

    def connection_set(self, layer):
        """The layer thread's own connections."""
        if self.cluster_url is not None:
            return cluster.ClusterConnections(self.cluster_url)
        return super().connection_set(layer)

    def link_topology(self, index):
        """Where the layer thread's pub/sub links for the groups of host `index` connect."""
        if self.cluster_url is not None:
            return link_topology(self.cluster_url, self.connection(index))
        return pubsub.Server(lambda: redis.asyncio.Redis(connection_pool=create_pool(self.hosts[index])))

    def group_channel(self, group):
        index = self.group_host(group)
        return wire.group_channel(self.channel_prefix, self.host_db(index), group, cluster=bool(self.cluster_url))

    def group_of(self, channel):
        """The group of a group's pub/sub channel."""
        index = 0  # every host names its channels alike; only the database differs
        return wire.channel_group(self.channel_prefix, self.host_db(index), channel, cluster=bool(self.cluster_url))

    def _publish(self, pipe, group, payload):
        """Add the group's PUBLISH (SPUBLISH on a cluster) to a pipeline."""
        if self.cluster_url is not None:
            pipe.spublish(self.group_channel(group), payload)
        else:
            pipe.publish(self.group_channel(group), payload)

    def is_groupcast_channel(self, channel):
        """True for a process-local channel made by a groupcast process (any process)."""
        if "!" not in channel:
            return False
        client_prefix = self.non_local_name(channel)[:-1].rpartition(".")[2]
        return len(client_prefix) == 32 and client_prefix.startswith(CLIENT_PREFIX_MARK)

    # Channels

    async def receive(self, channel):
        """The next message on `channel`: channels_redis's own for normal channels; this
        process's channels through the layer's thread."""
        assert self.require_valid_channel_name(channel)
        if "!" not in channel:
            return await super().receive(channel)
        assert self.is_process_local(channel), "Wrong client prefix"
        return await self.listener().receive(channel)

    # Groups

    async def group_add(self, group, channel):
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        if not self.is_process_local(channel):
            return await super().group_add(group, channel)
        listener = self.listener()
        await listener.call(listener.join(group, channel))
        async with self.connection(self.group_host(group)).pipeline(transaction=False) as pipe:
            if self.mixed_fleet:
                pipe.zadd(self.group_key(group), {channel: self._now()})
                pipe.expire(self.group_key(group), self.group_expiry)
            else:
                # a membership another process recorded in Redis is now held here
                pipe.zrem(self.group_key(group), channel)
            await pipe.execute()

    async def group_discard(self, group, channel):
        assert self.require_valid_group_name(group), "Group name not valid"
        assert self.require_valid_channel_name(channel), "Channel name not valid"
        if self.is_process_local(channel) and self._listener is not None:
            await self._listener.call(self._listener.leave(group, channel))
        async with self.connection(self.group_host(group)).pipeline(transaction=False) as pipe:
            pipe.zrem(self.group_key(group), channel)
            if self.is_groupcast_channel(channel) and not self.is_process_local(channel):
                # its own process may hold the membership: ask it to drop it
                self._publish(pipe, group, wire.discard(channel))
            await pipe.execute()

    async def group_send(self, group, message):
        """One PUBLISH, whatever the group's size; then, only for members recorded in
        Redis (added from other processes, or channels_redis processes), channels_redis's
        own delivery."""
        assert self.require_valid_group_name(group), "Group name not valid"
        if self._listener is not None:
            # this process's members are served here and now, as channels_redis would
            members = self._listener.members(group)
            if members:
                await self.hand_to_members(group, members, message)
        key = self.group_key(group)
        async with self.connection(self.group_host(group)).pipeline(transaction=False) as pipe:
            self._publish(pipe, group, wire.event(self.client_prefix, self.serialize(message)))
            pipe.zremrangebyscore(key, min=0, max=int(self._now()) - self.group_expiry)
            pipe.zrange(key, 0, -1)
            _, _, recorded = await pipe.execute()
        if recorded:
            names = [name.decode() for name in recorded]
            await self.send_to_members(group, names, message, extra=self._marked(group))

    async def hand_to_members(self, group, members, message):
        """Queue a group message for this process's `members`, behind what waits for
        them, under their capacity (a full one is skipped and counted)."""
        over = await self.send_to_members(group, members, message, in_order=True)
        if over:
            metrics.DROPPED.labels("channel_full").inc(over)

    def _marked(self, group):
        def extra(channels):
            # a groupcast process skips the members it holds itself (they heard the PUBLISH)
            return {GROUP_MARK: group} if self.is_groupcast_channel(channels[0]) else {}

        return extra

    @staticmethod
    def _now():
        return time.time()

    # Lifecycle

    async def flush(self):
        """Delete every key under the prefix and forget this process's memberships."""
        if self._listener is not None:
            await self._listener.call(self._listener.forget_all())
        if self.cluster_url is not None:
            await cluster.delete_prefix(self.connection(0), self.prefix)
            await self.close_pools()
            return
        await super().flush()

    async def _brpop_with_clean(self, index, channel, timeout):
        if self.cluster_url is None:
            return await super()._brpop_with_clean(index, channel, timeout)
        return await cluster.pop_with_backup(self.connection(index), channel, self._backup_channel_name(channel), timeout)

    async def close_pools(self):
        """Close this loop's connections; the layer's thread stops too once nothing in
        this process is in a group or waiting to receive."""
        await self.close_loop_pools()
        with self._listener_lock:
            listener = self._listener if self._listener is not None and self._listener.idle() else None
            if listener is not None:
                self._listener = None
        if listener is not None:
            await asyncio.to_thread(listener.stop)
