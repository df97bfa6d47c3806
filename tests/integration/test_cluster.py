"""REDIS_URL=redis+cluster://...: every role on a real Redis Cluster (3 masters, 3
replicas) and nothing else: groups spread over the shards, each socket process holds one
link per shard, jobs, presence and control requests work, and a master killed with
SIGKILL mid-stream loses no acknowledged publish."""

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis

from devstack import ROOT, Stack, free_port
from devstack.redis_cluster import RedisCluster
from tests.integration.clients import ResumingClient, Subscriber, api, metric, publish, token
from tests.integration.conftest import STACK_ENV, running
from tests.integration.test_faults import Publisher, exactly_once_in_order, scrape

pytestmark = pytest.mark.slow

GROUPS = [f"room.{n}" for n in range(24)]


@pytest.fixture(scope="module")
def cluster():
    nodes = RedisCluster(Path(tempfile.mkdtemp(prefix="groupcast-cluster-")))
    nodes.start()
    yield nodes
    nodes.stop()


@pytest.fixture(scope="module")
def stack(cluster):
    env = {**STACK_ENV, "GROUPCAST_REDIS_MIN_REPLICAS": "1", "GROUPCAST_REDIS_REPLICA_TIMEOUT_MS": "1000"}
    topology = Stack(socket_ports=[free_port(), free_port()], worker_ports=[free_port()],
                     redis_url=cluster.url, env=env)
    yield from running(topology)


def shards_of(cluster, keys):
    return {cluster.owner_of(key) for key in keys}


async def test_groups_spread_over_the_shards_and_reach_every_socket_process(cluster, stack):
    # the groups' streams live on every master, not one
    assert len(shards_of(cluster, [f"gc:stream:{{{group}}}" for group in GROUPS])) == 3
    tok = token(stack, GROUPS)
    subscribers = [await Subscriber(stack.ws_url(i), tok).connect() for i in range(2)]
    for subscriber in subscribers:
        for group in GROUPS:
            await subscriber.subscribe(group)
    sent = {group: publish(stack, group, {"to": group}) for group in GROUPS}
    for subscriber in subscribers:
        for group, offset in sent.items():
            assert await subscriber.receive(group, 1) == [(offset, {"to": group})]
        await subscriber.close()
    # one pub/sub link per shard in each socket process, whatever the number of groups
    for port in stack.socket_ports:
        text = scrape(f"http://127.0.0.1:{port}/metrics")
        assert [metric(text, "groupcast_redis_shard_up", f'role="socket",shard="{shard}"') for shard in "012"] == [1, 1, 1]
        pubsub = [c for master in cluster.master_ports() for c in redis.Redis(port=master).client_list(_type="pubsub")]
    assert len(pubsub) <= 3 * 2 * 2  # socket processes x shards (x the layer's own, at most)


async def test_a_batch_across_the_shards_waits_for_replicas_and_keeps_each_group_s_order(cluster, stack):
    groups = GROUPS[:9]
    assert len(shards_of(cluster, [f"gc:stream:{{{group}}}" for group in groups])) == 3
    subscriber = await Subscriber(stack.ws_url(0), token(stack, groups)).connect()
    for group in groups:
        await subscriber.subscribe(group)
    messages = [{"group": group, "data": n} for n in range(5) for group in groups]
    status, body = api(stack, "POST", "/api/v1/batch", {"messages": messages})
    assert status == 200, body
    for group in groups:  # a 200 with GROUPCAST_REDIS_MIN_REPLICAS=1: each shard's replica has them
        offsets = [r["offset"] for r in body["results"] if r["group"] == group]
        assert await subscriber.receive(group, 5) == [(o, n) for n, o in enumerate(offsets)]
    await subscriber.close()


async def test_jobs_presence_and_control_requests_on_the_cluster(stack):
    groups = GROUPS[:6]
    tok = token(stack, groups, sub="alice")
    watcher = await Subscriber(stack.ws_url(0), tok).connect()
    for group in groups:
        await watcher.socket.send(json.dumps({"type": "subscribe", "group": group, "presence": True}))
        while (await watcher.frame())["type"] != "subscribed":
            pass
    status, body = api(stack, "POST", "/api/v1/jobs", {"groups": groups, "data": {"job": 1}})
    assert status == 202, body
    for group in groups:
        [(offset, data)] = await watcher.receive(group, 1, timeout=20)
        assert data == {"job": 1}
    status, body = api(stack, "GET", f"/api/v1/groups/{groups[0]}/presence")
    assert status == 200 and [m["sub"] for m in body["members"]] == ["alice"]
    status, body = api(stack, "POST", "/api/v1/disconnect", {"sub": "alice"})
    assert status == 200 and body["disconnected"] == 1
    assert await watcher.until_closed() == 4009


async def test_a_master_killed_mid_stream_loses_no_acknowledged_publish(cluster, stack):
    # a group on a shard the worker does not depend on (its jobs and channel layer slots)
    worker_shards = {cluster.owner_of("gc:{jobs}:jobs:due"), cluster.owner_of("{gc}")}
    group = next(f"failover.{n}" for n in range(100)
                 if cluster.owner_of(f"gc:stream:{{failover.{n}}}") not in worker_shards)
    master = cluster.owner_of(f"gc:stream:{{{group}}}")
    tok = token(stack, [group])
    clients = [ResumingClient([stack.ws_url(i % 2), stack.ws_url((i + 1) % 2)], tok, group).start() for i in range(6)]
    for client in clients:
        await asyncio.wait_for(client.subscribed.wait(), 10)
    publisher = Publisher(stack, group, interval=0.02).start()
    deadline = time.monotonic() + 10
    while len(publisher.acknowledged) < 30:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    cluster.kill(master)  # SIGKILL
    # /readyz: 503 naming the shard where a role depends on it, until the replica takes over
    status, body = await asyncio.to_thread(readyz, stack.http_url + "/readyz")
    assert status == 503 and f"127.0.0.1:{master}" in body["reason"], body
    status, body = await asyncio.to_thread(readyz, f"http://127.0.0.1:{stack.worker_ports[0]}/readyz")
    assert status == 200, body
    await asyncio.to_thread(cluster.wait_failover, master)
    # The promoted replica has no replica of its own: with GROUPCAST_REDIS_MIN_REPLICAS=1
    # nothing is acknowledged (503 not_replicated) until the old master is back, as its
    # replica (a pod restarted by its StatefulSet).
    await asyncio.to_thread(cluster.start_node, master)
    after = len(publisher.acknowledged)
    deadline = time.monotonic() + 30
    while len(publisher.acknowledged) < after + 50:
        assert time.monotonic() < deadline, f"publishing did not resume: {publisher.statuses[-5:]}"
        await asyncio.sleep(0.1)
    await publisher.stop()
    status, body = await asyncio.to_thread(readyz, stack.http_url + "/readyz")
    assert status == 200, body
    # nothing but acknowledged or refused-with-Retry-After: never a false 200
    assert set(publisher.statuses) <= {200, 503}, publisher.statuses
    assert all(retry == "2" for retry in publisher.retry_after)
    for client in clients:
        await client.until_holding(publisher.acknowledged, timeout=30)
        exactly_once_in_order(client, publisher.acknowledged)
        await client.stop()


def test_a_cluster_url_naming_a_single_redis_stops_start_up_saying_so(redis_url):
    single = redis.connection.parse_url(redis_url)
    url = f"redis+cluster://{single['host']}:{single['port']}"
    result = subprocess.run(
        [sys.executable, "-m", "service.manage", "runworker", "groupcast.jobs"],
        env={**Stack(redis_url=url).env, "REDIS_URL": url}, cwd=ROOT,
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert f"REDIS_URL: {single['host']}:{single['port']} is not a Redis Cluster node" in result.stderr


def test_uncovered_slots_and_unreachable_seeds_are_named(tmp_path):
    from service.storage.clients import cluster_problem

    lone = RedisCluster(tmp_path, masters=1, replicas=0)
    [port] = lone.ports
    lone.start_node(port)  # cluster-enabled, no slots assigned
    try:
        problem = cluster_problem(f"redis+cluster://127.0.0.1:{port}")
        assert "does not serve every slot (0 of 16384 assigned" in problem
    finally:
        lone.stop()
    problem = cluster_problem(f"redis+cluster://127.0.0.1:{free_port()}")
    assert problem.startswith("no seed node of the Redis Cluster answers")


def readyz(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


async def test_the_official_tutorial_chat_runs_on_the_cluster(cluster, tmp_path):
    from tests.integration.test_tutorial import GROUPCAST, Daphne, chat

    config = {"redis_url": cluster.url, "prefix": "tutorial"}
    servers = [Daphne(GROUPCAST, config, tmp_path) for _ in range(2)]
    try:
        received, sent = await chat(servers)
        assert received == [sent] * len(received)
    finally:
        for server in servers:
            server.stop()


async def test_the_channel_layer_keeps_its_keys_in_one_slot_and_works_across_processes(cluster):
    from channels.exceptions import ChannelFull

    from service.layer import GroupcastChannelLayer

    # two layers: as two processes would have them, each with its own thread and links
    first = GroupcastChannelLayer(redis_url=cluster.url, prefix="lay", capacity=2)
    second = GroupcastChannelLayer(redis_url=cluster.url, prefix="lay", capacity=2)
    try:
        member = await first.new_channel()
        await first.group_add("room", member)
        await second.group_send("room", {"type": "chat.message", "text": "hi"})
        assert await asyncio.wait_for(first.receive(member), 10) == {"type": "chat.message", "text": "hi"}
        # a fixed channel, as runworker consumes them
        await first.send("thumbnails", {"type": "make", "n": 1})
        assert await asyncio.wait_for(second.receive("thumbnails"), 10) == {"type": "make", "n": 1}
        await first.send("full", {"type": "a"})
        await first.send("full", {"type": "b"})
        with pytest.raises(ChannelFull):
            await first.send("full", {"type": "c"})
        every = [key for port in cluster.master_ports() for key in redis.Redis(port=port).keys("{lay}*")]
        assert every and len({cluster.owner_of(key.decode()) for key in every}) == 1
        await first.flush()
        assert not [key for port in cluster.master_ports() for key in redis.Redis(port=port).keys("{lay}*")]
    finally:
        await first.close_pools()
        await second.flush()
        await second.close_pools()


async def test_publishes_follow_a_failover_with_min_replicas(cluster, settings):
    """With GROUPCAST_REDIS_MIN_REPLICAS a publish goes to its group's master itself (the
    script and its WAIT share a connection), past the cluster client's own redirections:
    after a failover the old master, now a replica, answers MOVED. The slot map is then
    refreshed, so once the nodes agree on the new master at most the publish that met it
    is refused (503), and the next ones reach the new master, from sync code (http) and
    async code (workers, sockets) alike."""
    from devstack import wait_until
    from service.storage import keys
    from service.storage.clients import REDIS_FAILURES
    from service.storage.publishing import apublish_message, publish_message

    settings.REDIS_URL = cluster.url
    settings.GROUPCAST_REDIS_MIN_REPLICAS = 1
    group = "failover.moved"
    publish_message(group=group, data={"n": 0})
    await apublish_message(group=group, data={"n": 0})
    master = cluster.owner_of(keys.stream(group))
    (replica,) = [p for p in cluster.ports if cluster.info(p, "replication").get("master_port") == master]
    assert cluster.command(replica, "CLUSTER", "FAILOVER") == "OK"  # a clean, manual failover
    # every node must know the new master: a slot map refreshed from one that has not
    # heard yet still names the old one (the next refresh corrects it)
    await asyncio.to_thread(wait_until, lambda: cluster.agreed_owner(keys.stream(group)) == replica and cluster.healthy(),
                            30, "the replica to take over, as every node sees it")

    async def outcomes(send):
        seen = []
        for n in range(4):
            try:
                await send(n)
                seen.append("ok")
            except REDIS_FAILURES as error:
                seen.append(type(error).__name__)
        return seen

    for name, send in {
        "sync": lambda n: asyncio.to_thread(publish_message, group=group, data={"n": n}),
        "async": lambda n: apublish_message(group=group, data={"n": n}),
    }.items():
        seen = await outcomes(send)
        assert seen[1:] == ["ok"] * 3, (name, seen)


async def test_async_publishes_are_batched_per_master_and_survive_lost_scripts(cluster, settings):
    """Async publishes of one pass go as one cluster pipeline (a round trip per master):
    each lands once, in order, in its group's stream on its own shard, also after every
    master lost its script cache (a restart or a failover to a replica that never ran it)."""
    from service.storage import keys
    from service.storage.publishing import apublish_message

    settings.REDIS_URL = cluster.url
    settings.GROUPCAST_REDIS_MIN_REPLICAS = 0
    groups = [f"batched.{n}" for n in range(9)]
    assert len(shards_of(cluster, [keys.stream(group) for group in groups])) == 3
    sent = {group: [] for group in groups}
    for round_ in range(2):
        offsets = await asyncio.gather(*(apublish_message(group=group, data=[round_, n])
                                         for n in range(3) for group in groups))
        for (n, group), offset in zip([(n, g) for n in range(3) for g in groups], offsets):
            sent[group].append(offset)
        for port in cluster.master_ports():
            redis.Redis(port=port).script_flush()
    for group in groups:
        client = redis.Redis(port=cluster.owner_of(keys.stream(group)))
        stored = client.xrange(keys.stream(group))
        assert [entry_id.decode() for entry_id, _ in stored] == sent[group]
        assert [json.loads(fields[b"d"]) for _, fields in stored] == [[r, n] for r in range(2) for n in range(3)]
