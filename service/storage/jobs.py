"""Job records: bulk broadcasts to many groups, and webhook deliveries, as Redis keeps them.

Its `kind` says what running it does: `broadcast` (the API's jobs, and records without a
kind) or `webhook` (a batch of connection events for GROUPCAST_WEBHOOK_URL).

A job is recorded in Redis (a hash, plus an entry in the `due` set saying when a worker
must look at it next) before anything else happens, so an accepted job is never lost.
Workers move due jobs onto the `groupcast.jobs` channel; the worker that takes one
holds a Lease, renewed while it runs. When a worker dies, the lease runs out, the job
becomes due again and another worker runs it (service/worker/jobs.py runs them).

Records are bounded: at most GROUPCAST_JOB_MAX_QUEUED jobs wait at once (queued or
delayed); a job not started within GROUPCAST_JOB_QUEUE_TTL of its time is given up; every
record carries a TTL from the moment it is written, and once a job has ended its payload
(data, group list) is dropped and the rest kept GROUPCAST_JOB_KEEP_SECONDS.
"""

import json
import os
import socket
import time
import uuid

from django.conf import settings

from service import metrics
from service.storage import keys
from service.storage.clients import redis_sync
from service.storage.publishing import encode_data


class QueueFull(Exception):
    """GROUPCAST_JOB_MAX_QUEUED jobs are already waiting: nothing was recorded."""


# Ending a job (done, failed, given up): what it no longer needs, and how long it stays.
END_LUA = """
local function job_end(job, now, status, keep)
  redis.call('HSET', job, 'status', status, 'owner', '', 'finished', now)
  redis.call('HDEL', job, 'data', 'groups', 'body')
  redis.call('EXPIRE', job, keep)
end
"""

# KEYS: job, due, queued. ARGV: now, run at, max queued, queue ttl, alive ttl, then the
# record's field/value pairs. Stale entries (no worker looked at them for a queue TTL:
# given up already) do not count against the bound.
CREATE_SCRIPT = """
local now, run_at = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. (now - tonumber(ARGV[4])))
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then return 0 end
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('EXPIREAT', KEYS[1], math.ceil(math.max(now, run_at) + tonumber(ARGV[5])))
redis.call('ZADD', KEYS[2], run_at, KEYS[1])
redis.call('ZADD', KEYS[3], run_at, KEYS[1])
return 1
"""

# KEYS: job, due, queued. ARGV: now, lease, max attempts, owner, alive ttl, keep.
START_SCRIPT = END_LUA + """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' then return false end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'error', 'gave up after ' .. attempts .. ' attempts')
  job_end(KEYS[1], ARGV[1], 'failed', ARGV[6])
  redis.call('ZREM', KEYS[2], KEYS[1]); redis.call('ZREM', KEYS[3], KEYS[1])
  return false
end
local lease_until = tonumber(ARGV[1]) + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'running', 'attempts', attempts + 1,
           'owner', ARGV[4], 'started', ARGV[1], 'lease_until', lease_until)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], lease_until, KEYS[1])
redis.call('ZREM', KEYS[3], KEYS[1])
return redis.call('HGETALL', KEYS[1])
"""

# Jobs whose time has come: queued ones are put (back) on the channel, running ones
# whose lease ran out are re-queued (due again from now), and queued ones still not
# started a queue TTL after their time are given up. Returns {ready jobs, given up}.
# A claim pushes its jobs' next look a guard (a lease) away, so an answer lost on the way
# (a connection cut after the script ran) would hold them back that long: the call's
# answer is kept under its claim id for the guard, and the same call made again gets it.
# KEYS: due, queued, claim. ARGV: now, guard, limit, queue ttl, keep.
DUE_SCRIPT = END_LUA + """
local claimed = redis.call('GET', KEYS[3])
if claimed then return cjson.decode(claimed) end
local now = tonumber(ARGV[1])
local ready, expired = {}, 0
for _, job in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[3])) do
  local status = redis.call('HGET', job, 'status')
  if status == 'running' then
    redis.call('HSET', job, 'status', 'queued', 'error', 'worker lease expired', 'owner', '',
               'run_at', ARGV[1])
    status = 'queued'
  end
  if status == 'queued' and tonumber(redis.call('HGET', job, 'run_at')) + tonumber(ARGV[4]) < now then
    redis.call('HSET', job, 'error', 'not started within ' .. ARGV[4] .. ' s of its time')
    job_end(job, ARGV[1], 'failed', ARGV[5])
    expired = expired + 1
    status = 'failed'
  end
  if status == 'queued' then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), job)
    redis.call('ZADD', KEYS[2], now, job)
    table.insert(ready, job)
  else
    -- ended, or its record expired: nothing left to run
    redis.call('ZREM', KEYS[1], job); redis.call('ZREM', KEYS[2], job)
  end
end
if #ready > 0 then
  redis.call('SET', KEYS[3], cjson.encode({ready, 0}), 'EX', math.ceil(tonumber(ARGV[2])))
end
return {ready, expired}
"""

# Only the lease holder may renew or finish. KEYS: job, due, queued.
# ARGV: owner, now, outcome ('renew' | 'release' | 'retry' | 'done' | 'failed'), lease,
# retry delay or (ending) keep, alive ttl, field/value pairs to record.
OUTCOME_SCRIPT = END_LUA + """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
for i = 6, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local outcome = ARGV[3]
local at = tonumber(ARGV[2]) + tonumber(ARGV[4])
if outcome == 'renew' then
  redis.call('HSET', KEYS[1], 'lease_until', at)
  redis.call('ZADD', KEYS[2], at, KEYS[1])
elseif outcome == 'release' or outcome == 'retry' then
  if outcome == 'release' then redis.call('HINCRBY', KEYS[1], 'attempts', -1) end
  redis.call('HSET', KEYS[1], 'status', 'queued', 'owner', '', 'run_at', at)
  redis.call('ZADD', KEYS[2], at, KEYS[1]); redis.call('ZADD', KEYS[3], at, KEYS[1])
else
  job_end(KEYS[1], ARGV[2], outcome, ARGV[4])
  redis.call('ZREM', KEYS[2], KEYS[1]); redis.call('ZREM', KEYS[3], KEYS[1])
  return 1
end
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[4]) + tonumber(ARGV[5])))
return 1
"""


def alive_ttl():
    """Seconds a record of a job that has not ended may outlive its last change: the most
    it can wait to start, run (one lease past its time limit, if its worker dies) and
    stay readable once it ends unseen."""
    return (
        settings.GROUPCAST_JOB_QUEUE_TTL
        + settings.GROUPCAST_JOB_MAX_SECONDS
        + settings.GROUPCAST_JOB_LEASE_SECONDS
        + settings.GROUPCAST_JOB_KEEP_SECONDS
    )


# How long an ended webhook delivery's record stays: only while someone looks into a
# failing receiver (a busy deployment records several a second).
KEEP_WEBHOOK = 600


def keep_seconds(kind):
    """How long an ended job's record stays readable, by kind."""
    if kind == "webhook":
        return min(KEEP_WEBHOOK, settings.GROUPCAST_JOB_KEEP_SECONDS)
    return settings.GROUPCAST_JOB_KEEP_SECONDS


def job_kind(record):
    return record.get("kind") or "broadcast"


def _new_record(kind, run_at, now, **fields):
    return {
        "kind": kind,
        "status": "queued",
        "run_at": repr(run_at),
        "attempts": 0,
        "created": repr(now),
        **fields,
    }


def _create_args(job_id, record, now, run_at, max_queued):
    return (
        [keys.job(job_id), keys.jobs_due(), keys.jobs_queued()],
        [now, run_at, max_queued, settings.GROUPCAST_JOB_QUEUE_TTL, alive_ttl(),
         *[item for pair in record.items() for item in pair]],
    )


def job_create(*, groups, data, run_at, rate=None):
    """Record a bulk broadcast; a worker picks it up once `run_at` has come. Raises
    QueueFull, recording nothing, when GROUPCAST_JOB_MAX_QUEUED jobs are waiting."""
    job_id = uuid.uuid4().hex
    now = time.time()
    record = _new_record(
        "broadcast", run_at, now,
        groups=json.dumps(groups),
        group_count=len(groups),
        data=encode_data(data),
        rate=repr(rate or 0),
        published=0,
    )
    client = redis_sync()
    script_keys, args = _create_args(job_id, record, now, run_at, settings.GROUPCAST_JOB_MAX_QUEUED)
    if not client.register_script(CREATE_SCRIPT)(keys=script_keys, args=args):
        raise QueueFull(f"{settings.GROUPCAST_JOB_MAX_QUEUED} jobs are already waiting")
    return job_id


# Webhook deliveries are not held to the broadcasts' queue bound (the socket processes'
# events must not be refused because of the API's jobs); their TTLs bound them.
WEBHOOKS_QUEUED_MAX = 2**31


async def webhook_job_create(client, *, body, events):
    """Record a webhook delivery of `body` (JSON text holding `events` events), due now."""
    job_id = uuid.uuid4().hex
    now = time.time()
    record = _new_record("webhook", now, now, body=body, events=events)
    script_keys, args = _create_args(job_id, record, now, now, WEBHOOKS_QUEUED_MAX)
    await client.register_script(CREATE_SCRIPT)(keys=script_keys, args=args)
    return job_id


def job_get(job_id):
    """The broadcast's public status, or None if there is no such broadcast (webhook
    deliveries are jobs too, but not the API's)."""
    if not job_id.isalnum() or len(job_id) > 64:
        return None
    fields = redis_sync().hgetall(keys.job(job_id))
    record = {k.decode(): v.decode() for k, v in fields.items()}
    if not record or job_kind(record) != "broadcast":
        return None
    return job_view(job_id, record)


def job_view(job_id, record):
    # Records written before group_count existed have only the list.
    groups = int(record.get("group_count") or len(json.loads(record["groups"])))
    return {
        "job": job_id,
        "status": record["status"],
        "attempts": int(record.get("attempts", 0)),
        "groups": groups,
        "published": int(record.get("published", 0)),
        "created": float(record["created"]),
        "run_at": float(record["run_at"]),
        "finished": float(record["finished"]) if record.get("finished") else None,
        "result": json.loads(record["result"]) if record.get("result") else None,
        "error": record.get("error") or None,
        # the worker process holding the job while it runs: host-pid
        "worker": record.get("owner", "").rpartition("/")[0] or None,
    }


async def jobs_due(client, *, claim=None, limit=100):
    """Claim jobs whose time has come; each is looked at again after a lease if nobody
    starts it. Jobs not started a queue TTL after their time are given up instead.
    `claim` names the call: made again with the same claim (its answer lost, or its jobs
    not all put on the channel), it answers the same jobs; None is a call of its own."""
    script = client.register_script(DUE_SCRIPT)
    ready, expired = await script(
        keys=[keys.jobs_due(), keys.jobs_queued(), keys.jobs_claim(claim or uuid.uuid4().hex)],
        args=[
            time.time(),
            settings.GROUPCAST_JOB_LEASE_SECONDS,
            limit,
            settings.GROUPCAST_JOB_QUEUE_TTL,
            settings.GROUPCAST_JOB_KEEP_SECONDS,
        ],
    )
    if expired:
        metrics.JOBS.labels("expired").inc(expired)
    metrics.role_gauges("worker").job_queue_depth.set(await client.zcard(keys.jobs_queued()))
    prefix = len(keys.job(""))
    return [job.decode()[prefix:] for job in ready]


class Lease:
    """One worker's hold on a running job."""

    def __init__(self, client, job_id):
        self.client = client
        self.job_id = job_id
        self.owner = f"{socket.gethostname()}-{os.getpid()}/{uuid.uuid4().hex}"
        self._outcome = client.register_script(OUTCOME_SCRIPT)
        self.keep = settings.GROUPCAST_JOB_KEEP_SECONDS

    async def start(self):
        """The job's record if this worker may run it now, else None."""
        script = self.client.register_script(START_SCRIPT)
        fields = await script(
            keys=[keys.job(self.job_id), keys.jobs_due(), keys.jobs_queued()],
            args=[
                time.time(),
                settings.GROUPCAST_JOB_LEASE_SECONDS,
                settings.GROUPCAST_JOB_MAX_ATTEMPTS,
                self.owner,
                alive_ttl(),
                settings.GROUPCAST_JOB_KEEP_SECONDS,
            ],
        )
        if not fields:
            return None
        record = {k.decode(): v.decode() for k, v in zip(fields[::2], fields[1::2])}
        self.keep = keep_seconds(job_kind(record))
        return record

    async def _record(self, outcome, seconds, **fields):
        pairs = [item for name, value in fields.items() for item in (name, value)]
        return await self._outcome(
            keys=[keys.job(self.job_id), keys.jobs_due(), keys.jobs_queued()],
            args=[self.owner, time.time(), outcome, seconds, alive_ttl(), *pairs],
        )

    async def renew(self, published):
        return await self._record("renew", settings.GROUPCAST_JOB_LEASE_SECONDS, published=published)

    async def release(self, published):
        """Hand the job back at once (this worker is shutting down); not a failed attempt."""
        return await self._record("release", 0, published=published)

    async def done(self, result):
        # The top-level count too: GET /jobs/<id> shows it beside `result`, and a finished
        # job must not read "published": 0.
        await self._record("done", self.keep, result=json.dumps(result), error="",
                           published=result.get("published", 0))

    async def fail(self, error, **fields):
        """End the job as failed, with no further attempt (trying again cannot help)."""
        await self._record("failed", self.keep, error=error, **fields)

    async def retry_or_fail(self, attempts, error):
        if attempts >= settings.GROUPCAST_JOB_MAX_ATTEMPTS:
            await self.fail(error)
            return "failed"
        await self._record("retry", min(60, 2**attempts), error=error)
        return "retried"
