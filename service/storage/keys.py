"""Redis key and pub/sub channel names, all under GROUPCAST_REDIS_PREFIX.

On a Redis Cluster every name carries a hash tag saying which slot it lives in, so that
no script or multi-key command crosses slots:

- a group's keys and its pub/sub channel share the group's slot (`gc:stream:{news}`), so
  a publish is one single-slot script that stores and announces (SPUBLISH);
- the fleet's keys (socket processes, their counts and connections) share one slot,
  `{fleet}`, and the jobs' keys another, `{jobs}`.

On one server (or Sentinel) the names are the same without the braces, so a deployment
upgrading in place keeps its streams, jobs and in-flight traffic.
"""

from django.conf import settings

from service.storage import wire
from service.storage.clients import is_cluster, url_db


def clustered():
    """True when REDIS_URL names a Redis Cluster."""
    return is_cluster(settings.REDIS_URL)


def redis_db():
    """The database number of REDIS_URL."""
    return url_db(settings.REDIS_URL)


def prefix():
    """GROUPCAST_REDIS_PREFIX: every key and channel of one deployment starts with it."""
    return settings.GROUPCAST_REDIS_PREFIX


def tag(name):
    """`name` as a hash tag on a cluster (its keys hash to one slot), as is elsewhere."""
    return f"{{{name}}}" if clustered() else name


def sharded(script):
    """A Lua script as this topology runs it: its PUBLISHes become SPUBLISH on a cluster
    (a shard channel, in the slot of the script's keys)."""
    return script.replace("'PUBLISH'", "'SPUBLISH'") if clustered() else script


def _in(slot, rest):
    """A key of one of the shared slots (`fleet`, `jobs`)."""
    return f"{prefix()}:{{{slot}}}:{rest}" if clustered() else f"{prefix()}:{rest}"


# A group's keys


def stream(group):
    """The group's history: a Redis Stream whose entry ids are the offsets."""
    return f"{prefix()}:stream:{tag(group)}"


def fanout_channel(group):
    """The pub/sub channel announcing the group's messages to socket processes; the same
    channel carries the group's Channels events (the channel layer's prefix is ours)."""
    return wire.group_channel(prefix(), redis_db(), group, cluster=clustered())


def once(group, key):
    """Remembers the offset of a publish to `group` made under an idempotency key (the
    key names the group already; on a cluster the name takes the group's slot too)."""
    return f"{prefix()}:once:{{{group}}}:{key}" if clustered() else f"{prefix()}:once:{key}"


def members(group):
    """Hash: the group's present members (sub -> connections, across every process)."""
    return f"{prefix()}:members:{tag(group)}"


def members_info(group):
    """Hash: each present member's info (sub -> JSON text)."""
    return f"{prefix()}:members:{tag(group)}:info"


def members_here(group, process):
    """Hash: one socket process's share of the group's members (sub -> connections)."""
    return f"{prefix()}:members:{tag(group)}:of:{process}"


# Requests to every socket process


def control_channel():
    """The pub/sub channel on which the API asks every socket process to act
    (disconnect a sub, unsubscribe it from a group); each answers on a reply list."""
    return fanout_channel("~all")


def control_reply(request_id):
    """List: the socket processes' answers to one control request."""
    return f"{prefix()}:control:{request_id}"


# The fleet of socket processes


def presence_processes():
    """Sorted set of socket processes, scored by when their presence expires."""
    return _in("fleet", "presence")


def presence_counts(process):
    """Hash of group -> local subscriber count for one socket process."""
    return _in("fleet", f"presence:{process}")


def presence_counts_prefix():
    return _in("fleet", "presence:")


def member_groups(process):
    """Set: the groups in which one socket process holds members (what a sweep visits
    once the process is gone)."""
    return _in("fleet", f"member-groups:{process}")


def connections():
    """Hash: each live socket process's open connections (process -> count), from its
    heartbeat; processes over the fleet's mean rebalance."""
    return _in("fleet", "connections")


# Jobs


def job(job_id):
    """Hash: one job's record."""
    return _in("jobs", f"job:{job_id}")


def jobs_due():
    """Sorted set of job ids scored by when a worker must look at them again."""
    return _in("jobs", "jobs:due")


def jobs_queued():
    """Sorted set of job ids waiting for a worker slot (the queue depth)."""
    return _in("jobs", "jobs:due:queued")


def jobs_claim(claim):
    """String: what one call of a worker's scheduler claimed (jobs_due), kept a lease long
    so that the same call made again after a lost answer gets the same jobs."""
    return _in("jobs", f"jobs:claim:{claim}")
