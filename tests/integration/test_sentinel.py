"""REDIS_URL=redis+sentinel://...: every role finds the master through Sentinel and follows
it across a failover, with nothing acknowledged lost."""

import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from devstack import Redis, Stack, free_port, wait_until
from tests.integration.clients import ResumingClient, token
from tests.integration.conftest import STACK_ENV
from tests.integration.test_faults import Publisher, exactly_once_in_order

pytestmark = pytest.mark.slow


class RedisSet:
    """A master, a replica and one Sentinel (quorum 1) on loopback."""

    def __init__(self):
        self.directory = Path(tempfile.mkdtemp(prefix="groupcast-sentinel-"))
        self.master = Redis(self.directory / "master")
        self.replica_port = free_port()
        self.sentinel_port = free_port()
        self.processes = []

    def start(self):
        self.master.start()
        replica_dir = self.directory / "replica"
        replica_dir.mkdir()
        self._spawn(["redis-server", "--port", str(self.replica_port), "--bind", "127.0.0.1",
                     "--save", "", "--appendonly", "yes", "--dir", str(replica_dir),
                     "--replicaof", "127.0.0.1", str(self.master.port)], "replica.log")
        config = self.directory / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\n"
            f"sentinel monitor mymaster 127.0.0.1 {self.master.port} 1\n"
            "sentinel down-after-milliseconds mymaster 2000\n"
            "sentinel failover-timeout mymaster 10000\n"
        )
        self._spawn(["redis-server", str(config), "--sentinel"], "sentinel.log")
        replica = redis.Redis(port=self.replica_port)
        wait_until(lambda: _answers(replica) and replica.info("replication")["master_link_status"] == "up",
                   15, "the replica to sync")
        wait_until(lambda: self.master_port() == self.master.port, 15, "Sentinel to know the master")
        # Sentinel learns of replicas from the master's INFO, every 10 s: a failover asked
        # before then is refused with NOGOODSLAVE.
        wait_until(self.replica_known, 25, "Sentinel to know the replica")
        return self

    def replica_known(self):
        try:
            replicas = redis.Redis(port=self.sentinel_port).sentinel_slaves("mymaster")
        except redis.RedisError:
            return False
        return any(r["port"] == self.replica_port and r["is_slave"] and not r["is_disconnected"]
                   and r["master-link-status"] == "ok" for r in replicas)

    def _spawn(self, args, log):
        self.processes.append(subprocess.Popen(
            args, stdout=open(self.directory / log, "ab"), stderr=subprocess.STDOUT))

    @property
    def url(self):
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/mymaster/0"

    def master_port(self):
        try:
            host, port = redis.Redis(port=self.sentinel_port).sentinel_get_master_addr_by_name("mymaster")
        except (redis.RedisError, TypeError):
            return None
        return int(port)

    def failover(self):
        redis.Redis(port=self.sentinel_port).execute_command("SENTINEL", "FAILOVER", "mymaster")

    def stop(self):
        for process in self.processes:
            process.kill()
            process.wait()
        self.master.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _answers(client):
    try:
        return client.ping()
    except redis.RedisError:
        return False


@pytest.fixture(scope="module")
def redis_set():
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed")
    servers = RedisSet().start()
    yield servers
    servers.stop()


async def test_the_channel_layer_takes_channels_redis_sentinel_entries(redis_set):
    from service.layer import GroupcastChannelLayer

    # as channels_redis documents a Sentinel host
    hosts = [{"sentinels": [("127.0.0.1", redis_set.sentinel_port)], "master_name": "mymaster"}]
    sender, owner = GroupcastChannelLayer(hosts=hosts), GroupcastChannelLayer(hosts=hosts)
    try:
        channel = await owner.new_channel()
        await owner.group_add("watched", channel)
        await sender.group_send("watched", {"type": "via.sentinel"})
        assert (await asyncio.wait_for(owner.receive(channel), 10))["type"] == "via.sentinel"
    finally:
        await sender.flush()
        await owner.flush()


async def test_every_role_follows_the_master_across_a_sentinel_failover(redis_set):
    env = {**STACK_ENV, "GROUPCAST_REDIS_MIN_REPLICAS": "1"}
    stack = Stack(socket_ports=[free_port(), free_port()], redis_url=redis_set.url, env=env)
    stack.start()
    try:
        tok = token(stack, ["sentinel"])
        clients = [ResumingClient([stack.ws_url(i % 2), stack.ws_url((i + 1) % 2)], tok, "sentinel").start()
                   for i in range(6)]
        for client in clients:
            await asyncio.wait_for(client.subscribed.wait(), 10)
        publisher = Publisher(stack, "sentinel", interval=0.05).start()
        deadline = time.monotonic() + 10
        while len(publisher.acknowledged) < 20:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        redis_set.failover()
        deadline = time.monotonic() + 30
        while redis_set.master_port() != redis_set.replica_port:
            assert time.monotonic() < deadline, "Sentinel never promoted the replica"
            await asyncio.sleep(0.1)
        after_failover = len(publisher.acknowledged)
        deadline = time.monotonic() + 30
        while len(publisher.acknowledged) < after_failover + 40:
            assert time.monotonic() < deadline, f"publishing did not resume: {publisher.statuses[-5:]}"
            await asyncio.sleep(0.1)
        await publisher.stop()
        assert set(publisher.statuses) <= {200, 503}
        for client in clients:
            await client.until_holding(publisher.acknowledged, timeout=30)
            exactly_once_in_order(client, publisher.acknowledged)
        # the new master holds what was acknowledged before the failover too
        new_master = redis.Redis(port=redis_set.replica_port)
        assert new_master.xlen("gc:stream:sentinel") >= len(publisher.acknowledged)
        for client in clients:
            await client.stop()
    finally:
        stack.stop()
