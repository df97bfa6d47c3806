"""Publishing a message to a group: store it in the group's stream, then announce it.

Both happen in one Lua script, so a stored message is never unannounced and an
announced one is always stored; the stream id Redis assigns is the message's offset.
The announcement carries the offset and the data JSON, which is all a socket process
needs to build the client frame once. On a Redis Cluster the script runs on the group's
shard (its keys and channel share the group's slot) and announces with SPUBLISH.
"""

import asyncio
import json
import time
import weakref

import redis
from django.conf import settings
from redis.exceptions import NoScriptError

from service import metrics
from service.storage import keys, wire
from service.storage.clients import primary_async, primary_sync, redis_async, redis_sync

PUBLISH_SCRIPT = """
if KEYS[2] then
  local seen = redis.call('GET', KEYS[2])
  if seen then return {seen, 0} end
end
local offset = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('PUBLISH', ARGV[1], %s)
if KEYS[2] then redis.call('SET', KEYS[2], offset, 'EX', ARGV[5]) end
return {offset, 1}
""" % wire.announcement_lua("offset", "ARGV[2]")

# How long an idempotency key remembers its publish.
ONCE_TTL = 86400
# An async publish fails (503 + Retry-After over HTTP, `unavailable` over the WebSocket)
# after this, whatever redis-py's connect timeouts, retries and a lost shard's name lookups
# add up to: against a Redis that accepts and never answers that was 82 s, and on kind the
# first publish after a cluster master's pod was deleted took 6 s.
PUBLISH_DEADLINE_SECONDS = 3.0


class NotReplicated(redis.ConnectionError):
    """Stored on the master but not yet on GROUPCAST_REDIS_MIN_REPLICAS replicas: not
    acknowledged, since a failover now could lose it (a retry with the same idempotency
    key returns the same offset)."""


# Built once: json.dumps with options builds an encoder per call.
_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode_data(data):
    """The canonical JSON stored and sent for a message's data."""
    return _CANONICAL.encode(data)


def _script_args(group, data_json, once_key):
    script_keys = [keys.stream(group)]
    if once_key is not None:
        script_keys.append(keys.once(group, once_key))
    args = [
        keys.fanout_channel(group),
        data_json,
        settings.GROUPCAST_HISTORY_SIZE,
        settings.GROUPCAST_HISTORY_TTL,
        ONCE_TTL,
    ]
    return script_keys, args


def _replicas():
    """(replicas, timeout ms) to WAIT for, or None."""
    if settings.GROUPCAST_REDIS_MIN_REPLICAS:
        return settings.GROUPCAST_REDIS_MIN_REPLICAS, settings.GROUPCAST_REDIS_REPLICA_TIMEOUT_MS
    return None


def _check_replicated(acknowledged_by):
    wanted = settings.GROUPCAST_REDIS_MIN_REPLICAS
    if acknowledged_by < wanted:
        raise NotReplicated(f"message reached {acknowledged_by} of {wanted} replicas in time")


def _result(group, reply, started):
    offset, fresh = reply
    offset = offset.decode() if isinstance(offset, bytes) else offset
    if fresh:
        metrics.PUBLISHES.inc()
        metrics.PUBLISH_SECONDS.observe(time.perf_counter() - started)
    return offset


_scripts = weakref.WeakKeyDictionary()  # sync client -> its publish script


def publish_message(*, group, data, once_key=None):
    """Store and announce one message; return its offset.

    With `once_key`, a repeated publish under the same key returns the first offset
    without publishing again (retries stay exactly-once).
    Raises redis.RedisError when Redis did not accept the message.
    """
    started = time.perf_counter()
    client = redis_sync()
    script = _scripts.get(client)
    if script is None:
        script = _scripts[client] = client.register_script(keys.sharded(PUBLISH_SCRIPT))
    script_keys, args = _script_args(group, encode_data(data), once_key)
    replicas = _replicas()
    if replicas is None:
        return _result(group, _evalsha(client, script, script_keys, args), started)
    # WAIT in the same round trip: it covers the script's writes on this connection (on a
    # cluster, a connection to the group's master).
    with primary_sync(script_keys[0]) as primary, primary.pipeline(transaction=False) as pipe:
        script(keys=script_keys, args=args, client=pipe)
        pipe.execute_command("WAIT", *replicas)
        reply, acknowledged_by = pipe.execute()
    _check_replicated(acknowledged_by)
    return _result(group, reply, started)


def _evalsha(client, script, script_keys, args):
    """script(keys=..., args=...) as one execute_command: the same EVALSHA through the same
    pool and retries, without redis-py's per-call checks around evalsha (its deprecated
    argument filter and the pipeline test: 8% of an http worker's publish, py-spy)."""
    try:
        return client.execute_command("EVALSHA", script.sha, len(script_keys), *script_keys, *args)
    except NoScriptError:  # a Redis that lost its scripts (restarted, failed over)
        script.sha = client.script_load(script.script)
        return client.execute_command("EVALSHA", script.sha, len(script_keys), *script_keys, *args)


async def apublish_message(*, group, data, once_key=None):
    """publish_message for async code (workers, consumers, Channels apps)."""
    return await apublish_encoded(group=group, data_json=encode_data(data), once_key=once_key)


async def apublish_encoded(*, group, data_json, once_key=None):
    """apublish_message for data already encoded as canonical JSON (encode_data).

    Gives up with TimeoutError (an OSError, so a Redis failure to every caller) after
    PUBLISH_DEADLINE_SECONDS plus the replica WAIT's timeout."""
    deadline = PUBLISH_DEADLINE_SECONDS + settings.GROUPCAST_REDIS_REPLICA_TIMEOUT_MS / 1000
    async with asyncio.timeout(deadline):
        return await _apublish_encoded(group, data_json, once_key)


async def _apublish_encoded(group, data_json, once_key):
    started = time.perf_counter()
    client = redis_async()
    script_keys, args = _script_args(group, data_json, once_key)
    replicas = _replicas()
    batch = _batch_of(client)
    if replicas is None:
        return _result(group, await batch.publish(script_keys, args), started)
    # With WAIT: on its own pipeline, with the client's script registered once.
    script = batch.script
    async with primary_async(client, script_keys[0]) as primary, primary.pipeline(transaction=False) as pipe:
        await script(keys=script_keys, args=args, client=pipe)
        pipe.execute_command("WAIT", *replicas)
        reply, acknowledged_by = await pipe.execute()
    _check_replicated(acknowledged_by)
    return _result(group, reply, started)


_batches = weakref.WeakKeyDictionary()  # async client -> its PublishBatch


def _batch_of(client):
    batch = _batches.get(client)
    if batch is None:
        batch = _batches[client] = PublishBatch(client)
    return batch


class PublishBatch:
    """The publishes of one pass of the event loop (clients publishing over their
    WebSockets, jobs) go to Redis as one pipeline: one round trip and one pooled
    connection for all of them instead of one each, which was a third of a socket
    process's CPU per client publish. Each script still runs on its own, in order;
    a publisher waits for its own reply, so its next publish comes after it."""

    def __init__(self, client):
        self.client = client
        self.script = client.register_script(keys.sharded(PUBLISH_SCRIPT))
        self.waiting = []

    def publish(self, script_keys, args):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append((script_keys, args, future))
        if len(self.waiting) == 1:
            loop.call_soon(self._send_soon)
        return future

    def _send_soon(self):
        batch, self.waiting = self.waiting, []
        asyncio.ensure_future(self._send(batch))

    async def _send(self, batch):
        try:
            replies = await self._run(batch)
            lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if lost:  # a Redis (or a cluster's master) that lost its scripts: restarted, failed over
                await self.client.script_load(self.script.script)
                for i, reply in zip(lost, await self._run([batch[i] for i in lost])):
                    replies[i] = reply  # only those: the others ran and must not run twice
        except Exception as error:
            replies = [error] * len(batch)
        for (_, _, future), reply in zip(batch, replies):
            if future.done():
                continue  # its publisher gave up waiting
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _run(self, batch):
        """One pipeline; on a cluster, redis-py's cluster pipeline sends each script to its
        group's master (one round trip per master) and follows MOVED itself."""
        async with self.client.pipeline(transaction=False) as pipe:
            for script_keys, args, _ in batch:
                pipe.execute_command("EVALSHA", self.script.sha, len(script_keys), *script_keys, *args)
            return list(await pipe.execute(raise_on_error=False))
