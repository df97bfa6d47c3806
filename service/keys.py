"""Redis key and pub/sub channel names, all under GROUPCAST_REDIS_PREFIX."""

from django.conf import settings


def _p():
    return settings.GROUPCAST_REDIS_PREFIX


def stream(group):
    """The group's history: a Redis Stream whose entry ids are the offsets."""
    return f"{_p()}:stream:{group}"


def fanout_channel(group):
    """The pub/sub channel announcing the group's messages to socket processes."""
    return f"{_p()}:fanout:{group}"


def fanout_prefix():
    return f"{_p()}:fanout:"


def once(key):
    """Remembers the offset of a publish made under an idempotency key."""
    return f"{_p()}:once:{key}"


def presence_processes():
    """Sorted set of socket processes, scored by when their presence expires."""
    return f"{_p()}:presence"


def presence_counts(process):
    """Hash of group -> local subscriber count for one socket process."""
    return f"{_p()}:presence:{process}"


def presence_counts_prefix():
    return f"{_p()}:presence:"


def job(job_id):
    return f"{_p()}:job:{job_id}"


def jobs_due():
    """Sorted set of job ids scored by when a worker must look at them again."""
    return f"{_p()}:jobs:due"
