"""The Redis a scenario runs on: the run's one shared redis-server, or a topology of its
own started fresh for each run (a single server, a Redis Cluster of N shards).

Every redis-server of a topology is a role of its own in the CPU accounting (`redis`, or
`redis0`, `redis1`, ... for a cluster's nodes), so the JSON shows each shard's share.
Besides the /proc figures every role gets, the servers are asked for their own CPU time
(INFO cpu: getrusage, to the microsecond rather than the 10 ms clock tick) and their
memory (INFO memory used_memory).
"""

import redis

from devstack import Redis
from devstack.redis_cluster import RedisCluster


def _info(port, section):
    client = redis.Redis(port=port, socket_timeout=5)
    try:
        return client.info(section)
    finally:
        client.close()


class Topology:
    """What every topology answers; `nodes()` is role -> (port, process)."""

    key = None

    def nodes(self):
        raise NotImplementedError

    def processes(self):
        """Role -> pid of every redis-server."""
        return {role: process.pid for role, (_, process) in self.nodes().items()}

    def cpu_seconds(self):
        """Role -> CPU seconds (user + system) each redis-server reports for itself."""
        usage = {}
        for role, (port, _) in self.nodes().items():
            info = _info(port, "cpu")
            usage[role] = info["used_cpu_user"] + info["used_cpu_sys"]
        return usage

    def used_memory(self):
        """Bytes Redis's allocator holds for data and buffers, over every server."""
        return sum(_info(port, "memory")["used_memory"] for port, _ in self.nodes().values())

    def describe(self):
        return {}


class SharedRedis(Topology):
    """The run's redis-server (AOF, appendfsync everysec), flushed before each scenario."""

    def __init__(self, server):
        self.server = server

    @property
    def url(self):
        return self.server.url

    def start(self):
        client = redis.Redis.from_url(self.url)
        try:
            client.flushall()
        finally:
            client.close()

    def stop(self):
        pass

    def nodes(self):
        return {"redis": (self.server.port, self.server.process)}


class SingleRedis(SharedRedis):
    """A private redis-server, configured as the shared one."""

    key = "single"

    def __init__(self, directory):
        super().__init__(Redis(directory, fsync="everysec"))

    def start(self):
        self.server.start()

    def stop(self):
        self.server.stop()

    def describe(self):
        return {"redis": self.key, "masters": 1, "replicas": 0}


class ClusterRedis(Topology):
    """A private Redis Cluster (devstack.redis_cluster): `masters` shards, no replicas
    unless asked, each node with AOF and appendfsync everysec like the single server."""

    def __init__(self, directory, masters, replicas=0):
        self.cluster = RedisCluster(directory, masters=masters, replicas=replicas)
        self.key = f"cluster-{masters}"

    @property
    def url(self):
        return self.cluster.url

    def start(self):
        self.cluster.start()

    def stop(self):
        self.cluster.stop()

    def nodes(self):
        return {f"redis{index}": (port, self.cluster.processes[port])
                for index, port in enumerate(self.cluster.ports)}

    def describe(self):
        return {"redis": self.key, "masters": self.cluster.masters,
                "replicas": self.cluster.replicas}


def title(key):
    """How the tables name a topology: `single Redis`, `3-shard cluster`."""
    if key is None:
        return "the run's Redis"
    return "single Redis" if key == "single" else f"{key.removeprefix('cluster-')}-shard cluster"


def topology(key, directory, server):
    """The topology named `key` (None: the run's shared `server`)."""
    if key is None:
        return SharedRedis(server)
    if key == "single":
        return SingleRedis(directory)
    if key.startswith("cluster-"):
        return ClusterRedis(directory, masters=int(key.removeprefix("cluster-")))
    raise ValueError(f"unknown Redis topology {key!r}")
