"""Presence: how many subscribers each group has, and who its members are, across every
socket process.

Each socket process keeps its own per-group counts in a Redis hash and refreshes its
entry in the processes set on a heartbeat. Members are the subscribers that asked for
presence: per group, a hash of sub -> connections and one of sub -> info, and per
process, a hash of "group sub" -> its own connections. A member joins with its first
connection anywhere and leaves with its last (joins and leaves are announced on the
group's pub/sub channel). A process that stops beating (killed, or drained) is swept by
the next live one after GROUPCAST_PRESENCE_TTL: its connections are taken off, and the
members that had none elsewhere leave. Times come from the Redis server's clock, so pods
with skewed clocks agree.
"""

import asyncio
import logging

from django.conf import settings

from service.storage import keys, wire
from service.storage.clients import redis_sync

log = logging.getLogger(__name__)

# KEYS: processes zset, this process's hash, the connections hash. ARGV: process id, ttl,
# this process's connections ('' on a count-only write), then group/count pairs (count 0
# removes the group).
BEAT_SCRIPT = """
local now = tonumber(redis.call('TIME')[1])
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '0' then redis.call('HDEL', KEYS[2], ARGV[i])
  else redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
end
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[3], ARGV[1], ARGV[3]) end
return now
"""

# The connections of every live socket process. KEYS: processes zset, connections hash.
FLEET_SCRIPT = """
local now = tonumber(redis.call('TIME')[1])
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
if #live == 0 then return {} end
return redis.call('HMGET', KEYS[2], unpack(live))
"""

# KEYS: processes zset. ARGV: group, hash key prefix. (Dead processes are left for the
# sweep, which takes their members off.)
COUNT_SCRIPT = """
local now = tonumber(redis.call('TIME')[1])
local total = 0
for _, process in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  local n = redis.call('HGET', ARGV[2] .. process, ARGV[1])
  if n then total = total + tonumber(n) end
end
return total
"""


# A member's connections change by ARGV[3] (+1 or -1).
# KEYS: members hash, info hash, this process's members hash.
# ARGV: group, sub, delta, info json, the group's pub/sub channel.
MEMBER_SCRIPT = """
local field = ARGV[1] .. ' ' .. ARGV[2]
if redis.call('HINCRBY', KEYS[3], field, ARGV[3]) <= 0 then redis.call('HDEL', KEYS[3], field) end
local total = redis.call('HINCRBY', KEYS[1], ARGV[2], ARGV[3])
if tonumber(ARGV[3]) > 0 then
  if total == 1 then
    redis.call('HSET', KEYS[2], ARGV[2], ARGV[4])
    redis.call('PUBLISH', ARGV[5], %(join)s)
  end
elseif total <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[2])
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('PUBLISH', ARGV[5], %(leave)s)
end
return total
""" % {"join": wire.join_lua("ARGV[2]", "ARGV[4]"), "leave": wire.leave_lua("ARGV[2]")}

# Processes whose heartbeat ran out: take their members' connections off (those left
# with none leave), then forget the process. A few per call; every heartbeat calls it.
# KEYS: processes zset. ARGV: key prefix, pub/sub channel prefix, the first process to
# sweep at once ('' for none: a process closing without a drain).
SWEEP_SCRIPT = """
local now = tonumber(redis.call('TIME')[1])
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[1], 0, ARGV[3]) end
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 10)
for _, process in ipairs(dead) do
  local own = ARGV[1] .. 'members-of:' .. process
  local entries = redis.call('HGETALL', own)
  for i = 1, #entries, 2 do
    local cut = string.find(entries[i], ' ', 1, true)
    local group, sub = string.sub(entries[i], 1, cut - 1), string.sub(entries[i], cut + 1)
    local members = ARGV[1] .. 'members:' .. group
    if redis.call('HINCRBY', members, sub, -tonumber(entries[i + 1])) <= 0 then
      redis.call('HDEL', members, sub)
      redis.call('HDEL', members .. ':info', sub)
      redis.call('PUBLISH', ARGV[2] .. group, %(leave)s)
    end
  end
  redis.call('DEL', own, ARGV[1] .. 'presence:' .. process)
  redis.call('HDEL', ARGV[1] .. 'connections', process)
  redis.call('ZREM', KEYS[1], process)
end
return #dead
""" % {"leave": wire.leave_lua("sub")}

# A page of a group's members. KEYS: members hash, info hash. ARGV: cursor, count.
MEMBERS_SCRIPT = """
local page = redis.call('HSCAN', KEYS[1], ARGV[1], 'COUNT', ARGV[2])
local out = {}
for i = 1, #page[2], 2 do
  table.insert(out, page[2][i])
  table.insert(out, page[2][i + 1])
  table.insert(out, redis.call('HGET', KEYS[2], page[2][i]) or 'null')
end
return {page[1], redis.call('HLEN', KEYS[1]), out}
"""


class Presence:
    """This process's subscriber counts and members per group, mirrored to Redis."""

    def __init__(self, client, process_id):
        self.client = client
        self.process_id = process_id
        self.counts = {}
        self._dirty = set()
        self._flushing = None
        self._heartbeat = None
        self._beat = client.register_script(BEAT_SCRIPT)
        self._member = client.register_script(MEMBER_SCRIPT)
        self._sweep = client.register_script(SWEEP_SCRIPT)
        self._members = client.register_script(MEMBERS_SCRIPT)
        self._fleet = client.register_script(FLEET_SCRIPT)
        # called after each heartbeat: the process's connection count, and what to do next
        self.connections = None
        self.after_beat = None
        # "group sub" -> this process's connections: what the members hash holds for it
        self.members_here = {}

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

    async def _write(self, groups, connections=""):
        pairs = []
        for group in groups:
            count = self.counts.get(group, 0)
            if count == 0:
                self.counts.pop(group, None)
            pairs += [group, count]
        await self._beat(
            keys=[keys.presence_processes(), keys.presence_counts(self.process_id), keys.connections()],
            args=[self.process_id, settings.GROUPCAST_PRESENCE_TTL, connections, *pairs],
        )

    async def fleet(self):
        """The connections of every live socket process (this one included)."""
        counts = await self._fleet(keys=[keys.presence_processes(), keys.connections()])
        return [int(count) for count in counts if count is not None]

    # Members

    async def member_join(self, *, group, sub, info_json):
        """One more connection of `sub` in `group` here; announces a join if it is the
        member's first anywhere."""
        await self._change(group, sub, 1, info_json)

    async def member_leave(self, *, group, sub):
        """One connection fewer; announces a leave if it was the member's last."""
        await self._change(group, sub, -1, "")

    async def _change(self, group, sub, delta, info_json):
        field = f"{group} {sub}"
        count = self.members_here.get(field, 0) + delta
        if count > 0:
            self.members_here[field] = count
        else:
            self.members_here.pop(field, None)
        await self._member(
            keys=[keys.members(group), keys.members_info(group), keys.members_of(self.process_id)],
            args=[group, sub, delta, info_json or "null", keys.fanout_channel(group)],
        )

    async def members(self, *, group, cursor="0", count=100):
        """(members, member_count, next cursor or None): a page of the group's members,
        each {"sub", "info" (JSON text), "connections"}."""
        return await members_page(self.client, group=group, cursor=cursor, count=count)

    async def sweep(self, now=False):
        """Take dead processes' members off; `now`: this process, at once."""
        await self._sweep(
            keys=[keys.presence_processes()],
            args=[keys.prefix() + ":", keys.fanout_prefix(), self.process_id if now else ""],
        )

    async def _beat_forever(self):
        interval = settings.GROUPCAST_PRESENCE_TTL / 3
        while True:
            await asyncio.sleep(interval)
            try:
                connections = self.connections() if self.connections is not None else ""
                await self._write(set(self.counts), connections)
                await self.sweep()
                if self.after_beat is not None:
                    await self.after_beat()
            except Exception as error:  # keep beating through Redis outages
                log.warning("presence heartbeat failed: %s", error)

    async def close(self, *, draining=False):
        """Stop beating. Draining, leave everything to expire: the clients reconnect
        elsewhere within GROUPCAST_PRESENCE_TTL, and their members stay present; else
        take this process off at once (its members leave now)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if draining:
            return
        try:
            await self.sweep(now=True)
        except Exception as error:
            log.warning("could not remove presence on close: %s", error)


async def members_page(client, *, group, cursor="0", count=100):
    script = client.register_script(MEMBERS_SCRIPT)
    next_cursor, total, flat = await script(
        keys=[keys.members(group), keys.members_info(group)], args=[cursor, count]
    )
    return _members(flat), int(total), _cursor(next_cursor)


def members_page_sync(*, group, cursor="0", count=100):
    """members_page for the http role."""
    client = redis_sync()
    script = client.register_script(MEMBERS_SCRIPT)
    next_cursor, total, flat = script(
        keys=[keys.members(group), keys.members_info(group)], args=[cursor, count]
    )
    return _members(flat), int(total), _cursor(next_cursor)


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _members(flat):
    return [
        {"sub": _text(flat[i]), "connections": int(flat[i + 1]), "info": _text(flat[i + 2])}
        for i in range(0, len(flat), 3)
    ]


def _cursor(value):
    value = _text(value)
    return None if value == "0" else value


def group_subscribers(*, group):
    """Subscribers of `group` across every live socket process."""
    client = redis_sync()
    script = client.register_script(COUNT_SCRIPT)
    return int(
        script(keys=[keys.presence_processes()], args=[group, keys.presence_counts_prefix()])
    )
