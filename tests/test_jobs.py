"""Jobs: recorded before queued, leased while running, retried when a worker dies, and
never publishing twice to a group."""

import asyncio
import time

import pytest

from service import metrics
from service.storage import jobs as records
from service.storage import keys
from service.worker import jobs
from service.storage.publishing import apublish_message
from service.storage.clients import make_async
from tests.conftest import eventually


@pytest.fixture
async def client(redis_url):
    client = make_async(redis_url)
    yield client
    await client.aclose()


def create(groups, run_at=None, rate=None):
    return records.job_create(groups=groups, data={"hello": "all"}, run_at=run_at or time.time(), rate=rate)


async def test_a_due_job_runs_once_and_publishes_to_each_group(client, sync_redis):
    job_id = create(["a", "b", "c"])
    assert await records.jobs_due(client) == [job_id]
    assert await jobs.job_run(client, job_id) == "done"
    for group in "abc":
        assert sync_redis.xlen(keys.stream(group)) == 1
    status = records.job_get(job_id)
    assert status["status"] == "done" and status["attempts"] == 1
    assert status["result"]["published"] == 3 and status["finished"] >= status["created"]
    assert status["published"] == 3  # the top-level count as well, not the last renewal's
    # a duplicate delivery of the same job message does nothing
    assert await jobs.job_run(client, job_id) is None
    assert await records.jobs_due(client) == []


async def test_a_claim_made_again_answers_the_same_jobs(client, sync_redis):
    """The scheduler's call made again after its answer was lost (or its sends failed)
    gets the jobs it claimed, instead of their being held back a lease."""
    job_id = create(["a"])
    assert await records.jobs_due(client, claim="c1") == [job_id]
    assert await records.jobs_due(client, claim="c2") == []  # claimed: not due for a lease
    assert await records.jobs_due(client, claim="c1") == [job_id]
    assert 0 < sync_redis.ttl(keys.jobs_claim("c1")) <= records.settings.GROUPCAST_JOB_LEASE_SECONDS
    # a call that claimed nothing leaves nothing behind
    assert not sync_redis.exists(keys.jobs_claim("c2"))
    assert await jobs.job_run(client, job_id) == "done"


async def test_a_delayed_job_is_not_due_before_its_time(client):
    job_id = create(["a"], run_at=time.time() + 60)
    assert await records.jobs_due(client) == []
    assert records.job_get(job_id)["status"] == "queued"


async def test_a_job_whose_worker_died_is_retried_after_its_lease_and_publishes_once(client, settings, sync_redis):
    settings.GROUPCAST_JOB_LEASE_SECONDS = 2
    job_id = create(["a", "b", "c", "d"])
    await records.jobs_due(client)
    # A worker takes the job, publishes to two groups, then dies without a word.
    dead = records.Lease(client, job_id)
    assert await dead.start() is not None
    for group in ("a", "b"):
        await apublish_message(group=group, data={"hello": "all"}, once_key=f"job:{job_id}:{group}")
    assert records.job_get(job_id)["status"] == "running"
    assert await records.jobs_due(client) == []  # its lease still holds
    due = await eventually(lambda: records.jobs_due(client), timeout=6, what="the lease to run out")
    assert due == [job_id]
    assert await jobs.job_run(client, job_id) == "done"
    assert [sync_redis.xlen(keys.stream(g)) for g in "abcd"] == [1, 1, 1, 1]
    status = records.job_get(job_id)
    assert status["status"] == "done" and status["attempts"] == 2


async def test_a_stalled_worker_cannot_finish_a_job_taken_over_by_another(client, settings):
    settings.GROUPCAST_JOB_LEASE_SECONDS = 2
    job_id = create(["a"])
    await records.jobs_due(client)
    stalled = records.Lease(client, job_id)
    await stalled.start()
    await eventually(lambda: records.jobs_due(client), timeout=6, what="the lease to run out")
    assert await jobs.job_run(client, job_id) == "done"
    assert not await stalled.renew(0)
    await stalled.done({"published": 99})
    assert records.job_get(job_id)["result"]["published"] == 1


async def test_a_job_gives_up_after_its_attempts(client, settings):
    settings.GROUPCAST_JOB_MAX_ATTEMPTS = 2
    settings.GROUPCAST_JOB_LEASE_SECONDS = 2
    job_id = create(["a"])
    for _ in range(2):
        await eventually(lambda: records.jobs_due(client), timeout=6, what="the job to be due")
        await records.Lease(client, job_id).start()  # and dies
    await eventually(lambda: records.jobs_due(client), timeout=6, what="the job to be due")
    assert await records.Lease(client, job_id).start() is None
    status = records.job_get(job_id)
    assert status["status"] == "failed" and "2 attempts" in status["error"]


async def test_rate_paces_a_job(client):
    job_id = create(["a", "b", "c", "d", "e"], rate=50)
    await records.jobs_due(client)
    started = time.monotonic()
    assert await jobs.job_run(client, job_id) == "done"
    assert time.monotonic() - started >= 4 / 50


async def test_a_worker_shutting_down_hands_its_job_back_at_once(client, sync_redis):
    job_id = create([f"g{n}" for n in range(20)], rate=20)
    await records.jobs_due(client)
    runner = asyncio.ensure_future(jobs.job_run(client, job_id))
    await eventually(lambda: jobs.running and next(iter(jobs.running.values())).published >= 3,
                     what="the job to be under way")
    await jobs.jobs_release_running()
    assert await runner == "lost"
    status = records.job_get(job_id)
    assert status["status"] == "queued" and status["attempts"] == 0
    assert await records.jobs_due(client) == [job_id]
    assert await jobs.job_run(client, job_id) == "done"
    assert all(sync_redis.xlen(keys.stream(f"g{n}")) == 1 for n in range(20))


async def test_the_pace_is_kept_between_groups_never_after_the_last(client):
    # One group at one publish a minute: nothing to wait for once it is published.
    job_id = create(["only"], rate=1 / 60)
    await records.jobs_due(client)
    started = time.monotonic()
    assert await jobs.job_run(client, job_id) == "done"
    assert time.monotonic() - started < 1
    # Two groups at one a second: one interval between them, none after (it was two).
    job_id = create(["a", "b"], rate=1)
    await records.jobs_due(client)
    started = time.monotonic()
    assert await jobs.job_run(client, job_id) == "done"
    assert 0.95 <= time.monotonic() - started < 1.6


async def test_a_run_past_the_time_limit_is_stopped_and_the_job_failed_not_retried(client, settings, sync_redis):
    settings.GROUPCAST_JOB_MAX_SECONDS = 1
    job_id = create([f"g{n}" for n in range(10)], rate=4)  # 2.25 s at its pace
    await records.jobs_due(client)
    timed_out = metrics.JOBS.labels("timed_out")._value.get()
    started = time.monotonic()
    assert await jobs.job_run(client, job_id) == "timed_out"
    assert 1 <= time.monotonic() - started < 1.5
    status = records.job_get(job_id)
    assert status["status"] == "failed" and "time limit of 1s" in status["error"]
    assert 4 <= status["published"] <= 5 and status["attempts"] == 1
    assert metrics.JOBS.labels("timed_out")._value.get() == timed_out + 1
    assert await records.jobs_due(client) == []  # not run again
    assert sync_redis.zcard(keys.jobs_queued()) == 0


async def test_an_ended_job_keeps_its_status_only_and_expires(client, settings, sync_redis):
    settings.GROUPCAST_JOB_KEEP_SECONDS = 1
    job_id = create(["a", "b"])
    assert sync_redis.ttl(keys.job(job_id)) > 0  # bounded from the start
    await records.jobs_due(client)
    assert await jobs.job_run(client, job_id) == "done"
    assert sync_redis.hkeys(keys.job(job_id)) and not sync_redis.hexists(keys.job(job_id), "data")
    assert not sync_redis.hexists(keys.job(job_id), "groups")
    assert 0 < sync_redis.ttl(keys.job(job_id)) <= 1
    status = records.job_get(job_id)
    assert status["status"] == "done" and status["groups"] == 2
    await eventually(lambda: records.job_get(job_id) is None, timeout=5, what="the record to expire")


async def test_a_record_expires_at_most_a_bounded_time_after_its_last_change(client, settings, sync_redis):
    job_id = create(["a"], run_at=time.time() + 3600)
    alive = records.alive_ttl()
    assert 3600 + alive - 5 <= sync_redis.ttl(keys.job(job_id)) <= 3600 + alive + 1  # whole seconds, rounded up
    job_id = create(["b"])
    await records.jobs_due(client)
    await records.Lease(client, job_id).start()  # running, then its worker dies
    assert alive - 5 <= sync_redis.ttl(keys.job(job_id)) <= alive


async def test_a_job_not_started_within_the_queue_ttl_is_given_up(client, settings, sync_redis):
    settings.GROUPCAST_JOB_QUEUE_TTL = 60
    expired = metrics.JOBS.labels("expired")._value.get()
    job_id = create(["a"], run_at=time.time() - 61)  # no worker looked for a minute
    assert await records.jobs_due(client) == []
    status = records.job_get(job_id)
    assert status["status"] == "failed" and "not started within 60 s" in status["error"]
    assert metrics.JOBS.labels("expired")._value.get() == expired + 1
    assert sync_redis.zcard(keys.jobs_due()) == 0 and sync_redis.zcard(keys.jobs_queued()) == 0
    assert 0 < sync_redis.ttl(keys.job(job_id)) <= settings.GROUPCAST_JOB_KEEP_SECONDS
    assert sync_redis.xlen(keys.stream("a")) == 0


async def test_at_most_max_queued_jobs_wait_and_stale_entries_do_not_count(client, settings, sync_redis):
    settings.GROUPCAST_JOB_MAX_QUEUED = 2
    settings.GROUPCAST_JOB_QUEUE_TTL = 60
    create(["a"], run_at=time.time() - 120)  # given up already, though no worker said so
    create(["b"], run_at=time.time() + 60)
    create(["c"])
    with pytest.raises(records.QueueFull):
        create(["d"])
    assert sync_redis.zcard(keys.jobs_queued()) == 2
