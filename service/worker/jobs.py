"""Running a job: publish its message to each of its groups, at its pace, under a lease.

Each group is published with the idempotency key `job:<id>:<group>`, so a retried job
never publishes to a group twice. While it runs, the lease is renewed (and the count of
groups done recorded); a worker that stops hands its jobs back at once. A run that
outlasts GROUPCAST_JOB_MAX_SECONDS is stopped and the job failed, so no job holds a
worker slot for longer.
"""

import asyncio
import json
import logging
import time
from dataclasses import dataclass

from django.conf import settings

from service import metrics
from service.storage.jobs import Lease
from service.storage.publishing import apublish_message

log = logging.getLogger(__name__)

CHANNEL = "groupcast.jobs"


@dataclass
class Progress:
    """How far a running job got, shared by its run and its lease keeper."""

    published: int = 0
    # another worker holds the job now (this one stalled past its lease, or is stopping)
    lost: bool = False


class LeaseLost(Exception):
    """Another worker took the job over (this one stalled past its lease)."""


# The jobs this process is running, so a shutdown can hand them back.
running: dict[Lease, Progress] = {}


async def jobs_release_running():
    """On shutdown: give every job this process runs back to the queue, right away."""
    for lease, progress in list(running.items()):
        progress.lost = True
        try:
            await lease.release(progress.published)
        except Exception as error:
            log.warning("job %s: could not hand back (%s); its lease will expire", lease.job_id, error)


async def job_run(client, job_id):
    """Run one job if it is still to be run; return its outcome (or None if not ours)."""
    lease = Lease(client, job_id)
    record = await lease.start()
    if record is None:
        return None
    progress = running[lease] = Progress()
    try:
        return await _run_leased(lease, record, progress)
    finally:
        running.pop(lease, None)


async def _run_leased(lease, record, progress):
    job_id = lease.job_id
    started = time.perf_counter()
    groups = json.loads(record["groups"])
    data = json.loads(record["data"])
    rate = float(record["rate"])
    keeper = asyncio.ensure_future(_keep_lease(lease, progress))
    limit = settings.GROUPCAST_JOB_MAX_SECONDS
    deadline = asyncio.timeout(limit)
    try:
        try:
            async with deadline:
                offsets = await _broadcast(job_id, groups, data, rate, progress)
        finally:
            keeper.cancel()
    except LeaseLost:
        outcome = "lost"
    except Exception as error:
        if deadline.expired():
            # Failed, not retried: another run would hold a worker slot as long again.
            log.warning("job %s: over its time limit of %ss, stopped", job_id, limit)
            await lease.fail(
                f"over its time limit of {limit}s; published to {progress.published} "
                f"of {len(groups)} groups",
                published=progress.published,
            )
            outcome = "timed_out"
        else:
            log.warning("job %s failed on attempt %s: %s", job_id, record["attempts"], error)
            outcome = await lease.retry_or_fail(int(record["attempts"]), str(error)[:500])
    else:
        await lease.done({"published": len(offsets), "last_offset": offsets[-1] if offsets else None})
        outcome = "done"
    metrics.JOBS.labels(outcome).inc()
    metrics.JOB_SECONDS.observe(time.perf_counter() - started)
    return outcome


async def _broadcast(job_id, groups, data, rate, progress):
    offsets = []
    interval = 1 / rate if rate else 0
    next_at = time.monotonic()
    for index, group in enumerate(groups):
        if index and interval:
            # The job's pace: between groups only, never after the last one.
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        if progress.lost:
            raise LeaseLost(job_id)
        offsets.append(await apublish_message(group=group, data=data, once_key=f"job:{job_id}:{group}"))
        progress.published = len(offsets)
    return offsets


async def _keep_lease(lease, progress):
    # Renewing often also keeps the job's `published` count fresh for GET /jobs/<id>.
    period = min(1.0, settings.GROUPCAST_JOB_LEASE_SECONDS / 3)
    while True:
        await asyncio.sleep(period)
        try:
            if not await lease.renew(progress.published):
                log.warning("job %s: lease lost to another worker", lease.job_id)
                progress.lost = True
                return
        except Exception as error:
            log.warning("job %s: lease renewal failed: %s", lease.job_id, error)
