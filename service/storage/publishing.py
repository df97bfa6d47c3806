"""Publishing a message to a group: store it in the group's stream, then announce it.

Both happen in one Lua script, so a stored message is never unannounced and an
announced one is always stored; the stream id Redis assigns is the message's offset.
The announcement carries the offset and the data JSON, which is all a socket process
needs to build the client frame once. On a Redis Cluster the script runs on the group's
shard (its keys and channel share the group's slot) and announces with SPUBLISH.
"""

import asyncio
import contextlib
import json
import time
import weakref

import redis
from django.conf import settings
from redis.exceptions import NoScriptError

from service import metrics
from service.storage import keys, wire
from service.storage.clients import primary_async, primary_sync, redis_async, redis_sync, stale_map

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
    PUBLISH_DEADLINE_SECONDS plus the replica WAIT's timeout: the deadline of the
    pipeline the publish goes to Redis in (_sent_by_the_deadline)."""
    started = time.perf_counter()
    client = redis_async()
    script_keys, args = _script_args(group, data_json, once_key)
    if _replicas() is None:
        reply = await _batch_of(client).publish(script_keys, args)
    else:
        reply = await _publish_waited(client, [(script_keys, args)])[0]
    return _result(group, reply, started)


async def apublish_many(messages):
    """apublish_encoded for many (group, data_json, once_key) at once (a batch publish):
    their scripts go to Redis together, in the given order (PublishBatch's pipeline; with
    replicas to wait for, _publish_waited's). Returns, in the same order, each message's
    offset or the exception that failed it (TimeoutError past the deadline)."""
    if not messages:
        return []
    started = time.perf_counter()
    client = redis_async()
    scripted = [_script_args(*message) for message in messages]
    if _replicas() is None:
        batch = _batch_of(client)
        waiting = [batch.publish(script_keys, args) for script_keys, args in scripted]
    else:
        waiting = _publish_waited(client, scripted)
    replies = await asyncio.gather(*waiting, return_exceptions=True)
    return [reply if isinstance(reply, BaseException) else _result(group, reply, started)
            for (group, _, _), reply in zip(messages, replies)]


@contextlib.asynccontextmanager
async def _sent_by_the_deadline():
    """The deadline of one pipeline of publishes: past it every publisher in it gets a
    TimeoutError and the pipeline is cancelled (its connection dropped, not left waiting
    on a Redis that never answers). One timer per round trip, not one per publish (an
    asyncio.timeout per publish was 8% of an http worker's CPU, py-spy)."""
    try:
        async with asyncio.timeout(PUBLISH_DEADLINE_SECONDS + settings.GROUPCAST_REDIS_REPLICA_TIMEOUT_MS / 1000):
            yield
    except TimeoutError:
        raise TimeoutError("Redis did not answer in time") from None


def _publish_waited(client, scripted):
    """Futures of the scripts' replies, each acknowledged only once on enough replicas:
    per master, one pipeline of its scripts in order and one WAIT after them (WAIT covers
    every write before it on its connection). A script stored but not replicated in time
    fails with NotReplicated."""
    futures = [asyncio.get_running_loop().create_future() for _ in scripted]
    asyncio.ensure_future(_run_waited(client, list(zip(scripted, futures))))
    return futures


async def _run_waited(client, entries):
    try:
        async with _sent_by_the_deadline():
            by_master = {}  # a master's client (one per master: clients.primary_async) -> its entries
            for entry in entries:
                async with primary_async(client, _stream_key(entry)) as primary:
                    by_master.setdefault(primary, []).append(entry)
            await asyncio.gather(*(_pipeline_waited(client, master_entries) for master_entries in by_master.values()))
    except Exception as error:
        # finding the masters failed (no script was sent), or the deadline passed (those
        # settled already keep their reply)
        _settle(entries, [error] * len(entries))


async def _pipeline_waited(client, entries):
    script = _batch_of(client).script
    try:
        async with primary_async(client, _stream_key(entries[0])) as primary, \
                primary.pipeline(transaction=False) as pipe:
            for (script_keys, args), _ in entries:
                await script(keys=script_keys, args=args, client=pipe)
            pipe.execute_command("WAIT", *_replicas())
            *replies, acknowledged_by = await pipe.execute(raise_on_error=False)
            for reply in (*replies, acknowledged_by):
                # raised here, so that primary_async refreshes the slot map (a failover);
                # a script's own error (WRONGTYPE, say) stays its message's alone
                if isinstance(reply, Exception) and (stale_map(reply) or reply is acknowledged_by):
                    raise reply
        _check_replicated(acknowledged_by)
    except Exception as error:
        replies = [error] * len(entries)
    _settle(entries, replies)


def _stream_key(entry):
    (script_keys, _), _ = entry
    return script_keys[0]


def _settle(entries, replies):
    """Each waiting publisher its reply or its exception."""
    for (_, future), reply in zip(entries, replies):
        if future.done():
            continue  # its publisher gave up waiting
        if isinstance(reply, Exception):
            future.set_exception(reply)
        else:
            future.set_result(reply)


_batches = weakref.WeakKeyDictionary()  # async client -> its PublishBatch


def _batch_of(client):
    batch = _batches.get(client)
    if batch is None:
        batch = _batches[client] = PublishBatch(client)
    return batch


class PublishBatch:
    """The publishes of two passes of the event loop (an http worker's publishes and batches,
    clients publishing over their WebSockets, jobs) go to Redis as one pipeline: one round
    trip and one pooled connection for all of them instead of one each, which was a third
    of a socket process's CPU per client publish. Each script still runs on its own, in order;
    a publisher waits for its own reply, so its next publish comes after it."""

    def __init__(self, client):
        self.client = client
        self.script = client.register_script(keys.sharded(PUBLISH_SCRIPT))
        self.waiting = []

    def publish(self, script_keys, args):
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.waiting.append(((script_keys, args), future))
        if len(self.waiting) == 1:
            # Sent two passes of the loop from now, not one: what is read off the sockets in
            # the next pass (an http request, a client's frame) reaches here only a pass
            # later, when its task first runs, and joins this round trip instead of starting
            # the next. An http worker's CPU per publish at 16 clients: -16 to -19%.
            loop.call_soon(loop.call_soon, self._send_soon)
        return future

    def _send_soon(self):
        batch, self.waiting = self.waiting, []
        asyncio.ensure_future(self._send(batch))

    async def _send(self, batch):
        try:
            async with _sent_by_the_deadline():
                replies = await self._run(batch)
                lost = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
                if lost:  # a Redis (or a cluster's master) that lost its scripts: restarted, failed over
                    await self.client.script_load(self.script.script)
                    for i, reply in zip(lost, await self._run([batch[i] for i in lost])):
                        replies[i] = reply  # only those: the others ran and must not run twice
        except Exception as error:
            replies = [error] * len(batch)
        _settle(batch, replies)

    async def _run(self, batch):
        """One pipeline; on a cluster, redis-py's cluster pipeline sends each script to its
        group's master (one round trip per master) and follows MOVED itself."""
        async with self.client.pipeline(transaction=False) as pipe:
            for (script_keys, args), _ in batch:
                pipe.execute_command("EVALSHA", self.script.sha, len(script_keys), *script_keys, *args)
            return list(await pipe.execute(raise_on_error=False))
