"""A private Redis Cluster on loopback: `masters` shards, each with `replicas` replicas,
made the way operators make one (`redis-server --cluster-enabled yes`, then
`redis-cli --cluster create`; with fewer than 3 masters, which that refuses, the
same cluster commands one by one).

The tests run every role on it; `python -m devstack --cluster` runs the local stack on
one. Failover is quick (a 2 s node timeout) so a test can kill a master and watch its
replica take over.
"""

import random
import shutil
import signal
import subprocess
from pathlib import Path

from devstack import port_taken, wait_until

NODE_TIMEOUT_MS = 2000


class RedisCluster:
    def __init__(self, directory, *, masters=3, replicas=1):
        self.directory = Path(directory)
        self.masters = masters
        self.replicas = replicas
        self.ports = node_ports(masters * (1 + replicas))
        self.processes = {}

    @property
    def url(self):
        """Every node as a seed (any one would do)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make installs it)")
        for port in self.ports:
            self.start_node(port, binary)
        if self.masters < 3:
            self.assemble()
        else:
            self.create()
        wait_until(self.healthy, 30, "the Redis Cluster to agree on its slots and replicas")
        return self

    def create(self):
        """The operators' way: `redis-cli --cluster create` (it wants 3 masters or more)."""
        create = subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
             *(f"127.0.0.1:{port}" for port in self.ports),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60,
        )
        if create.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {create.stdout}{create.stderr}")

    def assemble(self):
        """Fewer than 3 masters (a 1-shard cluster, say), made with the commands
        `redis-cli --cluster create` sends: each master takes an even share of the
        slots, every node meets the first, each replica follows its master."""
        masters, replicas = self.ports[:self.masters], self.ports[self.masters:]
        share = 16384 // self.masters
        for index, port in enumerate(masters):
            last = 16383 if index == self.masters - 1 else (index + 1) * share - 1
            self.command(port, "CLUSTER", "ADDSLOTSRANGE", index * share, last)
            self.command(port, "CLUSTER", "SET-CONFIG-EPOCH", index + 1)
        for port in self.ports[1:]:
            self.command(port, "CLUSTER", "MEET", "127.0.0.1", self.ports[0])
        wait_until(lambda: all(len((self.command(port, "CLUSTER", "NODES") or "").splitlines())
                               == len(self.ports) for port in self.ports),
                   30, "the Redis Cluster's nodes to meet")
        for index, port in enumerate(replicas):
            master_id = self.command(masters[index % self.masters], "CLUSTER", "MYID")
            self.command(port, "CLUSTER", "REPLICATE", master_id)

    def start_node(self, port, binary=None):
        directory = self.directory / str(port)
        directory.mkdir(parents=True, exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [binary or shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             # a replica takes over however long it was out of touch (a test kills masters)
             "--cluster-replica-validity-factor", "0", "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec",
             "--dir", str(directory), "--protected-mode", "no"],
            stdout=open(directory / "redis.log", "ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: self.command(port, "PING") is True, 10, f"redis-server on port {port}")

    def command(self, port, *args):
        """One command to one node, its reply as text (None if the node is down)."""
        import redis

        client = redis.Redis(port=port, socket_connect_timeout=1, socket_timeout=2, decode_responses=True)
        try:
            return client.execute_command(*args)
        except (redis.ConnectionError, redis.TimeoutError):
            return None
        finally:
            client.close()

    def info(self, port, section):
        return self.command(port, "INFO", section) or {}

    def cluster_state(self, port):
        return (self.command(port, "CLUSTER", "INFO") or "").count("cluster_state:ok") == 1

    def roles(self):
        """port -> 'master' | 'slave' for the nodes that answer."""
        roles = {}
        for port in self.ports:
            role = self.info(port, "replication").get("role")
            if role:
                roles[port] = role
        return roles

    def master_ports(self):
        return [port for port, role in self.roles().items() if role == "master"]

    def healthy(self):
        """Every live node sees all slots served, and every master has its replicas."""
        live = [port for port in self.ports if self.processes.get(port) and self.processes[port].poll() is None]
        for port in live:
            if not self.cluster_state(port):
                return False
        replication = {port: self.info(port, "replication") for port in live}
        masters = [port for port in live if replication[port].get("role") == "master"]
        replicas = [port for port in live if replication[port].get("role") == "slave"]
        return len(masters) == self.masters and all(
            replication[port].get("master_link_status") == "up" for port in replicas
        ) and (not self.replicas or all(int(replication[port].get("connected_slaves", 0)) for port in masters))

    def owner_of(self, key):
        """The port of the master serving `key`'s slot."""
        masters = self.master_ports()
        slot = self.command(masters[0], "CLUSTER", "KEYSLOT", key)
        for port in masters:
            for start, end, *nodes in self.command(port, "CLUSTER", "SLOTS") or []:
                if start <= slot <= end:
                    return _port_of(nodes[0])
        raise RuntimeError(f"no master serves slot {slot}")

    def agreed_owner(self, key):
        """The port of the master serving `key`'s slot if every live node says so (after
        a failover the nodes learn of the new master by gossip, one after another), else
        None."""
        masters = self.master_ports()
        if not masters:
            return None
        slot = self.command(masters[0], "CLUSTER", "KEYSLOT", key)
        owners = set()
        for port in self.ports:
            if not (self.processes.get(port) and self.processes[port].poll() is None):
                continue
            slots = self.command(port, "CLUSTER", "SLOTS")
            if slots is None:
                return None
            owners |= {_port_of(nodes[0]) for start, end, *nodes in slots if start <= slot <= end}
        return owners.pop() if len(owners) == 1 else None

    def kill(self, port, sig=signal.SIGKILL):
        process = self.processes.get(port)
        if process and process.poll() is None:
            process.send_signal(sig)
            process.wait(10)

    def wait_failover(self, dead, timeout=30):
        """Wait until a replica took over from the master on `dead` and every slot is served."""
        def taken_over():
            live = [p for p in self.ports if p != dead and self.processes[p].poll() is None]
            return len([p for p in live if self.info(p, "replication").get("role") == "master"]) == self.masters \
                and all(self.cluster_state(p) for p in live)

        wait_until(taken_over, timeout, f"a replica to take over from the master on port {dead}")

    def stop(self):
        for port in self.ports:
            self.kill(port, signal.SIGTERM)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()



def _port_of(node):
    """The port of a CLUSTER SLOTS node entry ([host, port, id, ...])."""
    return int(node[1])


# Each node also listens on its port + 10000 for the cluster bus, so nodes take ports
# below the ephemeral range whose bus port is free too.
PORT_RANGE = (20000, 30000)


def node_ports(count):
    ports = []
    while len(ports) < count:
        port = random.randrange(*PORT_RANGE)
        if port not in ports and not port_taken(port) and not port_taken(port + 10000):
            ports.append(port)
    return ports
