"""Presence: how many subscribers each group has, across every socket process.

Each socket process keeps its own per-group counts in a Redis hash with a TTL and
refreshes it on a heartbeat, so the counts of a process that died vanish within
GROUPCAST_PRESENCE_TTL seconds without anyone cleaning up after it. Times come from the
Redis server's clock, so pods with skewed clocks agree.
"""

import asyncio
import logging

from django.conf import settings

from service.storage import keys
from service.storage.clients import redis_sync

log = logging.getLogger(__name__)

# KEYS: processes zset, this process's hash. ARGV: process id, ttl, then group/count
# pairs (count 0 removes the group).
BEAT_SCRIPT = """
local now = tonumber(redis.call('TIME')[1])
for i = 3, #ARGV, 2 do
  if ARGV[i + 1] == '0' then redis.call('HDEL', KEYS[2], ARGV[i])
  else redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return now
"""

# KEYS: processes zset. ARGV: group, hash key prefix.
COUNT_SCRIPT = """
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local total = 0
for _, process in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local n = redis.call('HGET', ARGV[2] .. process, ARGV[1])
  if n then total = total + tonumber(n) end
end
return total
"""


class Presence:
    """This process's subscriber counts per group, mirrored to Redis."""

    def __init__(self, client, process_id):
        self.client = client
        self.process_id = process_id
        self.counts = {}
        self._dirty = set()
        self._flushing = None
        self._heartbeat = None
        self._beat = client.register_script(BEAT_SCRIPT)

    def start(self):
        self._heartbeat = asyncio.ensure_future(self._beat_forever())

    def changed(self, group, count):
        self.counts[group] = count
        self._dirty.add(group)

    async def flush(self):
        """Write changed counts; concurrent callers share round trips."""
        while self._dirty:
            if self._flushing is None:
                self._flushing = asyncio.ensure_future(self._write_dirty())
            await asyncio.shield(self._flushing)

    async def _write_dirty(self):
        dirty = set()
        try:
            # Yield once so every change made in this loop iteration joins one write.
            await asyncio.sleep(0)
            dirty, self._dirty = self._dirty, set()
            await self._write(dirty)
        except BaseException:
            self._dirty |= dirty
            raise
        finally:
            self._flushing = None

    async def _write(self, groups):
        pairs = []
        for group in groups:
            count = self.counts.get(group, 0)
            if count == 0:
                self.counts.pop(group, None)
            pairs += [group, count]
        await self._beat(
            keys=[keys.presence_processes(), keys.presence_counts(self.process_id)],
            args=[self.process_id, settings.GROUPCAST_PRESENCE_TTL, *pairs],
        )

    async def _beat_forever(self):
        interval = settings.GROUPCAST_PRESENCE_TTL / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self._write(set(self.counts))
            except Exception as error:  # keep beating through Redis outages
                log.warning("presence heartbeat failed: %s", error)

    async def close(self):
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        try:
            await self.client.delete(keys.presence_counts(self.process_id))
            await self.client.zrem(keys.presence_processes(), self.process_id)
        except Exception as error:
            log.warning("could not remove presence on close: %s", error)


def group_subscribers(*, group):
    """Subscribers of `group` across every live socket process."""
    client = redis_sync()
    script = client.register_script(COUNT_SCRIPT)
    return int(
        script(keys=[keys.presence_processes()], args=[group, keys.presence_counts_prefix()])
    )
