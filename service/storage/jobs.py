"""Job records: bulk broadcasts to many groups, as Redis keeps them.

A job is recorded in Redis (a hash, plus an entry in the `due` set saying when a worker
must look at it next) before anything else happens, so an accepted job is never lost.
Workers move due jobs onto the `groupcast.jobs` channel; the worker that takes one
holds a Lease, renewed while it runs. When a worker dies, the lease runs out, the job
becomes due again and another worker runs it (service/worker/jobs.py runs them).
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

# How long a finished job's status stays readable.
KEEP_FINISHED = 7 * 86400

# KEYS: job, due, queued. ARGV: now, lease, max attempts, owner.
START_SCRIPT = """
local status = redis.call('HGET', KEYS[1], 'status')
if status ~= 'queued' then return false end
local attempts = tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
if attempts >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'status', 'failed', 'finished', ARGV[1],
             'error', 'gave up after ' .. attempts .. ' attempts')
  redis.call('ZREM', KEYS[2], KEYS[1]); redis.call('ZREM', KEYS[3], KEYS[1])
  return false
end
local lease_until = tonumber(ARGV[1]) + tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'status', 'running', 'attempts', attempts + 1,
           'owner', ARGV[4], 'started', ARGV[1], 'lease_until', lease_until)
redis.call('ZADD', KEYS[2], lease_until, KEYS[1])
redis.call('ZREM', KEYS[3], KEYS[1])
return redis.call('HGETALL', KEYS[1])
"""

# Jobs whose time has come: queued ones are put (back) on the channel, running ones
# whose lease ran out are re-queued. KEYS: due, queued. ARGV: now, guard, limit.
DUE_SCRIPT = """
local ready = {}
for _, job in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])) do
  local status = redis.call('HGET', job, 'status')
  if status == 'running' then
    redis.call('HSET', job, 'status', 'queued', 'error', 'worker lease expired', 'owner', '')
    status = 'queued'
  end
  if status == 'queued' then
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), job)
    redis.call('ZADD', KEYS[2], ARGV[1], job)
    table.insert(ready, job)
  else
    redis.call('ZREM', KEYS[1], job)
  end
end
return ready
"""

# Only the lease holder may renew or finish. KEYS: job, due, queued.
# ARGV: owner, now, outcome ('renew' | 'release' | 'done' | 'retry' | 'failed'), lease
# or retry delay, field/value pairs to record.
OUTCOME_SCRIPT = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
local outcome = ARGV[3]
local at = tonumber(ARGV[2]) + tonumber(ARGV[4])
if outcome == 'renew' then
  redis.call('HSET', KEYS[1], 'lease_until', at)
  redis.call('ZADD', KEYS[2], at, KEYS[1])
elseif outcome == 'release' then
  redis.call('HINCRBY', KEYS[1], 'attempts', -1)
  redis.call('HSET', KEYS[1], 'status', 'queued', 'owner', '')
  redis.call('ZADD', KEYS[2], at, KEYS[1]); redis.call('ZADD', KEYS[3], at, KEYS[1])
elseif outcome == 'retry' then
  redis.call('HSET', KEYS[1], 'status', 'queued', 'owner', '', 'run_at', at)
  redis.call('ZADD', KEYS[2], at, KEYS[1]); redis.call('ZADD', KEYS[3], at, KEYS[1])
else
  redis.call('HSET', KEYS[1], 'status', outcome, 'owner', '', 'finished', ARGV[2])
  redis.call('ZREM', KEYS[2], KEYS[1]); redis.call('ZREM', KEYS[3], KEYS[1])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return 1
"""


def job_create(*, groups, data, run_at, rate=None):
    """Record a bulk broadcast; a worker picks it up once `run_at` has come."""
    job_id = uuid.uuid4().hex
    now = time.time()
    key = keys.job(job_id)
    record = {
        "status": "queued",
        "groups": json.dumps(groups),
        "data": encode_data(data),
        "run_at": repr(run_at),
        "rate": repr(rate or 0),
        "attempts": 0,
        "published": 0,
        "created": repr(now),
    }
    with redis_sync().pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=record)
        pipe.zadd(keys.jobs_due(), {key: run_at})
        pipe.zadd(keys.jobs_queued(), {key: run_at})
        pipe.execute()
    return job_id


def job_get(job_id):
    """The job's public status, or None if there is no such job."""
    if not job_id.isalnum() or len(job_id) > 64:
        return None
    fields = redis_sync().hgetall(keys.job(job_id))
    if not fields:
        return None
    return job_view(job_id, {k.decode(): v.decode() for k, v in fields.items()})


def job_view(job_id, record):
    groups = json.loads(record["groups"])
    return {
        "job": job_id,
        "status": record["status"],
        "attempts": int(record.get("attempts", 0)),
        "groups": len(groups),
        "published": int(record.get("published", 0)),
        "created": float(record["created"]),
        "run_at": float(record["run_at"]),
        "finished": float(record["finished"]) if record.get("finished") else None,
        "result": json.loads(record["result"]) if record.get("result") else None,
        "error": record.get("error") or None,
        # the worker process holding the job while it runs: host-pid
        "worker": record.get("owner", "").rpartition("/")[0] or None,
    }


async def jobs_due(client, *, limit=100):
    """Claim jobs whose time has come; each is looked at again after a lease if nobody starts it."""
    script = client.register_script(DUE_SCRIPT)
    ready = await script(
        keys=[keys.jobs_due(), keys.jobs_queued()],
        args=[time.time(), settings.GROUPCAST_JOB_LEASE_SECONDS, limit],
    )
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
            ],
        )
        if not fields:
            return None
        return {k.decode(): v.decode() for k, v in zip(fields[::2], fields[1::2])}

    async def _record(self, outcome, seconds, **fields):
        pairs = [item for name, value in fields.items() for item in (name, value)]
        return await self._outcome(
            keys=[keys.job(self.job_id), keys.jobs_due(), keys.jobs_queued()],
            args=[self.owner, time.time(), outcome, seconds, *pairs],
        )

    async def renew(self, published):
        return await self._record("renew", settings.GROUPCAST_JOB_LEASE_SECONDS, published=published)

    async def release(self, published):
        """Hand the job back at once (this worker is shutting down); not a failed attempt."""
        return await self._record("release", 0, published=published)

    async def done(self, result):
        # The top-level count too: GET /jobs/<id> shows it beside `result`, and a finished
        # job must not read "published": 0.
        await self._record("done", KEEP_FINISHED, result=json.dumps(result), error="",
                           published=result.get("published", 0))

    async def retry_or_fail(self, attempts, error):
        if attempts >= settings.GROUPCAST_JOB_MAX_ATTEMPTS:
            await self._record("failed", KEEP_FINISHED, error=error)
            return "failed"
        await self._record("retry", min(60, 2**attempts), error=error)
        return "retried"
