"""The channel layer on a Redis Cluster (`redis_url` of the redis+cluster:// form).

channels_redis never ran on a cluster: its scripts name several channel keys at once, and
two of them name their keys as arguments. The layer runs there by:

- keeping every key of the layer in one slot: the key prefix becomes a hash tag (`{gc}`),
  so those scripts stay single-slot. The layer's queues (runworker channels, process
  channels) therefore live on one shard; a group's traffic does not: it is sharded
  pub/sub on the group's own slot, the channel groupcast's fan-out uses;
- one cluster client per event loop in place of channels_redis's per-host pools, which
  follows failovers and MOVED replies;
- the receive-backup cleanup script given its keys as keys.
"""

from service.storage.clients import LAYER_READ_TIMEOUT, make_async

# core.py _brpop_with_clean's cleanup, with its keys declared (the cluster routes by them)
CLEANUP_BACKUP = """
local backed_up = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = #backed_up, 1, -2 do
    redis.call('ZADD', KEYS[1], backed_up[i], backed_up[i - 1])
end
redis.call('DEL', KEYS[2])
"""

# core.py flush, run on the one node that holds the layer's slot
DELETE_PREFIX = """
local keys = redis.call('keys', ARGV[1])
for i=1,#keys,5000 do
    redis.call('del', unpack(keys, i, math.min(i+4999, #keys)))
end
return #keys
"""


def key_prefix(prefix):
    """The layer's key prefix on a cluster: a hash tag, so all its keys share one slot."""
    return f"{{{prefix}}}"


class ClusterConnections:
    """What channels_redis's RedisLoopLayer is for one event loop, on a cluster: a single
    cluster client stands for the one 'host'."""

    def __init__(self, url):
        self.url = url
        self.client = None

    def get_connection(self, index):
        if self.client is None:
            # BZPOPMIN blocks for up to brpop_timeout: reads get more room
            self.client = make_async(self.url, socket_timeout=LAYER_READ_TIMEOUT)
        return self.client

    async def flush(self):
        client, self.client = self.client, None
        if client is not None:
            await client.aclose()


async def pop_with_backup(connection, channel_key, backup_key, timeout):
    """core.py _brpop_with_clean, with the cleanup script's keys declared."""
    await connection.eval(CLEANUP_BACKUP, 2, channel_key, backup_key)
    result = await connection.bzpopmin(channel_key, timeout=timeout)
    if result is None:
        return None
    _, member, timestamp = result
    await connection.zadd(backup_key, {member: float(timestamp)})
    return member


async def delete_prefix(connection, prefix):
    await connection.initialize()
    node = connection.get_node_from_key(prefix)
    await connection.execute_command("EVAL", DELETE_PREFIX, 0, prefix + "*", target_nodes=node)
