"""Presence: how many subscribers each group has, and who its members are, across every
socket process.

Each socket process keeps its own per-group counts in a Redis hash and refreshes its
entry in the processes set on a heartbeat. Members are the subscribers that asked for
presence: per group, a hash of sub -> connections and one of sub -> info, and per group
and process, a hash of sub -> that process's connections; each process also lists the
groups it holds members in. A member joins with its first connection anywhere and
leaves with its last (joins and leaves are announced on the group's pub/sub channel). A
process that stops beating (killed, or drained) is swept by the next live one after
GROUPCAST_PRESENCE_TTL: group by group, its connections are taken off, and the members
that had none elsewhere leave. Times come from the Redis server's clock, so pods with
skewed clocks agree.

No script touches two slots of a Redis Cluster: the fleet's keys share one slot and each
group's keys the group's slot (keys.py), so a sweep visits the groups one script each.
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


# A member's connections here change by ARGV[2] (+1 or -1).
# KEYS: members hash, info hash, this process's members hash (all of the group).
# ARGV: sub, delta, info json, the group's pub/sub channel.
MEMBER_SCRIPT = """
if redis.call('HINCRBY', KEYS[3], ARGV[1], ARGV[2]) <= 0 then redis.call('HDEL', KEYS[3], ARGV[1]) end
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if tonumber(ARGV[2]) > 0 then
  if total == 1 then
    redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
    redis.call('PUBLISH', ARGV[4], %(join)s)
  end
elseif total <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('PUBLISH', ARGV[4], %(leave)s)
end
return total
""" % {"join": wire.join_lua("ARGV[1]", "ARGV[3]"), "leave": wire.leave_lua("ARGV[1]")}

# Processes whose heartbeat ran out, a few at a time, each with the groups it held
# members in. KEYS: processes zset. ARGV: member-groups key prefix, the process to sweep
# at once ('' for none: a process closing without a drain).
DEAD_SCRIPT = """
local now = tonumber(redis.call('TIME')[1])
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[1], 0, ARGV[2]) end
local out = {}
for _, process in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 10)) do
  table.insert(out, {process, redis.call('SMEMBERS', ARGV[1] .. process)})
end
return out
"""

# A dead process's members in one group: their connections are taken off (those left with
# none leave). KEYS: members hash, info hash, the process's members hash. ARGV: channel.
SWEEP_GROUP_SCRIPT = """
local entries = redis.call('HGETALL', KEYS[3])
for i = 1, #entries, 2 do
  local sub = entries[i]
  if redis.call('HINCRBY', KEYS[1], sub, -tonumber(entries[i + 1])) <= 0 then
    redis.call('HDEL', KEYS[1], sub)
    redis.call('HDEL', KEYS[2], sub)
    redis.call('PUBLISH', ARGV[1], %(leave)s)
  end
end
redis.call('DEL', KEYS[3])
return #entries / 2
""" % {"leave": wire.leave_lua("sub")}

# Forget a swept process. KEYS: processes zset, its counts hash, its member-groups set,
# the connections hash. ARGV: process id.
FORGET_SCRIPT = """
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
"""

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
        self._member = client.register_script(keys.sharded(MEMBER_SCRIPT))
        self._dead = client.register_script(DEAD_SCRIPT)
        self._sweep_group = client.register_script(keys.sharded(SWEEP_GROUP_SCRIPT))
        self._forget = client.register_script(FORGET_SCRIPT)
        self._members = client.register_script(MEMBERS_SCRIPT)
        self._fleet = client.register_script(FLEET_SCRIPT)
        # called after each heartbeat: the process's connection count, and what to do next
        self.connections = None
        self.after_beat = None
        # "group sub" -> this process's connections: what the members hash holds for it
        self.members_here = {}
        # group -> this process's member connections in it (listed in member_groups)
        self.member_groups = {}

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
        in_group = self.member_groups.get(group, 0) + delta
        if in_group > 0:
            self.member_groups[group] = in_group
        else:
            self.member_groups.pop(group, None)
        if delta > 0 and in_group == 1:
            # listed before its members are written, so a sweep always finds them
            await self.client.sadd(keys.member_groups(self.process_id), group)
        await self._member(
            keys=[keys.members(group), keys.members_info(group), keys.members_here(group, self.process_id)],
            args=[sub, delta, info_json or "null", keys.fanout_channel(group)],
        )
        if in_group <= 0:
            await self.client.srem(keys.member_groups(self.process_id), group)
            if self.member_groups.get(group):
                # a join came meanwhile, and its SADD may have landed before the SREM
                await self.client.sadd(keys.member_groups(self.process_id), group)

    async def members(self, *, group, cursor="0", count=100):
        """(members, member_count, next cursor or None): a page of the group's members,
        each {"sub", "info" (JSON text), "connections"}."""
        return await members_page(self.client, group=group, cursor=cursor, count=count)

    async def sweep(self, now=False):
        """Take dead processes' members off, group by group; `now`: this process, at once."""
        dead = await self._dead(
            keys=[keys.presence_processes()],
            args=[keys.member_groups(""), self.process_id if now else ""],
        )
        for process, groups in dead:
            process = _text(process)
            for group in groups:
                group = _text(group)
                await self._sweep_group(
                    keys=[keys.members(group), keys.members_info(group), keys.members_here(group, process)],
                    args=[keys.fanout_channel(group)],
                )
            await self._forget(
                keys=[keys.presence_processes(), keys.presence_counts(process),
                      keys.member_groups(process), keys.connections()],
                args=[process],
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
