"""Redis key and pub/sub channel names, all under GROUPCAST_REDIS_PREFIX."""

from django.conf import settings

from service.storage import wire
from service.storage.clients import url_db


def redis_db():
    """The database number of REDIS_URL."""
    return url_db(settings.REDIS_URL)


def prefix():
    """GROUPCAST_REDIS_PREFIX: every key and channel of one deployment starts with it."""
    return settings.GROUPCAST_REDIS_PREFIX


def stream(group):
    """The group's history: a Redis Stream whose entry ids are the offsets."""
    return f"{prefix()}:stream:{group}"


def fanout_channel(group):
    """The pub/sub channel announcing the group's messages to socket processes; the same
    channel carries the group's Channels events (the channel layer's prefix is ours)."""
    return wire.group_channel(prefix(), redis_db(), group)


def control_channel():
    """The pub/sub channel on which the API asks every socket process to act
    (disconnect a sub, unsubscribe it from a group); each answers on a reply list."""
    return wire.group_channel(prefix(), redis_db(), "~all")


def control_reply(request_id):
    """List: the socket processes' answers to one control request."""
    return f"{prefix()}:control:{request_id}"


def fanout_prefix():
    return wire.group_channel(prefix(), redis_db(), "")


def once(key):
    """Remembers the offset of a publish made under an idempotency key."""
    return f"{prefix()}:once:{key}"


def presence_processes():
    """Sorted set of socket processes, scored by when their presence expires."""
    return f"{prefix()}:presence"


def presence_counts(process):
    """Hash of group -> local subscriber count for one socket process."""
    return f"{prefix()}:presence:{process}"


def presence_counts_prefix():
    return f"{prefix()}:presence:"


def connections():
    """Hash: each live socket process's open connections (process -> count), from its
    heartbeat; processes over the fleet's mean rebalance."""
    return f"{prefix()}:connections"


def members(group):
    """Hash: the group's present members (sub -> connections, across every process)."""
    return f"{prefix()}:members:{group}"


def members_info(group):
    """Hash: each present member's info (sub -> JSON text)."""
    return f"{prefix()}:members:{group}:info"


def members_of(process):
    """Hash: one socket process's share of the members ("group sub" -> connections)."""
    return f"{prefix()}:members-of:{process}"


def job(job_id):
    """Hash: one job's record."""
    return f"{prefix()}:job:{job_id}"


def jobs_due():
    """Sorted set of job ids scored by when a worker must look at them again."""
    return f"{prefix()}:jobs:due"


def jobs_queued():
    """Sorted set of job ids waiting for a worker slot (the queue depth)."""
    return f"{prefix()}:jobs:due:queued"
