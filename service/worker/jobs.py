"""Running a job under a lease: a broadcast, or a webhook delivery (service/worker/webhook.py).

A broadcast publishes its message to each of its groups, at its pace, each with the
idempotency key `job:<id>:<group>`, so a retried job never publishes to a group twice.
While a job runs, the lease is renewed (and a broadcast's count of groups done recorded);
a worker that stops hands its jobs back at once. A run that raises is retried with
backoff, up to GROUPCAST_JOB_MAX_ATTEMPTS, unless its error says `final`. A run that
outlasts GROUPCAST_JOB_MAX_SECONDS is stopped and the job failed, so no job holds a
worker slot for longer.
"""

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from service import metrics
from service.storage.jobs import Lease, job_kind
from service.storage.publishing import apublish_message
from service.tasks import cancel_and_wait
from service.worker import webhook

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
    """Run the job and record its outcome: done, retried, failed, rejected (failed at
    once: its error was final), timed_out (past its time limit) or lost (another worker
    holds it now)."""
    job_id = lease.job_id
    started = time.perf_counter()
    kind = KINDS.get(job_kind(record))
    keeper = asyncio.ensure_future(_keep_lease(lease, progress))
    limit = settings.GROUPCAST_JOB_MAX_SECONDS
    deadline = asyncio.timeout(limit)
    try:
        try:
            if kind is None:
                raise ValueError(f"unknown job kind {job_kind(record)!r}")  # a newer worker may know it
            async with deadline:
                result = await kind.run(job_id, record, progress)
        finally:
            # ended before the job's outcome is recorded, so no renewal comes after it
            await cancel_and_wait([keeper])
    except LeaseLost:
        outcome = "lost"
    except Exception as error:
        if deadline.expired():
            # Failed, not retried: another run would hold a worker slot as long again.
            log.warning("job %s: over its time limit of %ss, stopped", job_id, limit)
            await lease.fail(f"over its time limit of {limit}s; {progress.published} done",
                             published=progress.published)
            outcome = "timed_out"
        elif getattr(error, "final", False):
            log.warning("%s job %s failed for good: %s", job_kind(record), job_id, error)
            await lease.fail(str(error)[:500])
            outcome = "rejected"
        else:
            log.warning("%s job %s failed on attempt %s: %s", job_kind(record), job_id, record["attempts"], error)
            outcome = await lease.retry_or_fail(int(record["attempts"]), str(error)[:500])
    else:
        await lease.done(result)
        outcome = "done"
    if kind is not None:
        kind.count(outcome, record, time.perf_counter() - started)
    return outcome


async def _run_broadcast(job_id, record, progress):
    groups = json.loads(record["groups"])
    offsets = await _broadcast(job_id, groups, json.loads(record["data"]), float(record["rate"]), progress)
    return {"published": len(offsets), "last_offset": offsets[-1] if offsets else None}


def _count_broadcast(outcome, record, seconds):
    metrics.JOBS.labels(outcome).inc()
    metrics.JOB_SECONDS.observe(seconds)


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


@dataclass(frozen=True)
class Kind:
    """What running a job of one kind does, and how its outcomes are counted."""

    # async (job id, record, progress) -> the result to record; raising fails the attempt
    run: Callable
    # (outcome, record, seconds taken)
    count: Callable


KINDS = {
    "broadcast": Kind(run=_run_broadcast, count=_count_broadcast),
    "webhook": Kind(run=webhook.webhook_run, count=webhook.webhook_count),
}


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
