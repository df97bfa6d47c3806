"""What the soak test watches: each socket process (RSS, open files, its TCP sockets, its
Prometheus gauges and counters) and Redis (the fan-out channels and their subscribers).

Every call blocks (psutil, HTTP, Redis); the soak runs them in a thread.
"""

import collections
import re
import urllib.request
from urllib.parse import urlsplit

import psutil
import redis

from tests.integration.clients import metric

FANOUT_PATTERN = "gc:fanout:*"
GAUGES = ("groupcast_connections", "groupcast_subscriptions", "groupcast_groups_local", "groupcast_event_loop_tasks")
COUNTERS = (
    "groupcast_deliveries_total",
    "groupcast_dropped_total",
    "groupcast_disconnects_total",
    "groupcast_client_errors_total",
    "groupcast_recovered_total",
)
SAMPLE = re.compile(r"^(\w+)(?:\{([^}]*)\})? (\S+)$")


class SocketProcess:
    """One Daphne socket process, seen from outside."""

    def __init__(self, *, name, pid, port, redis_port):
        self.name = name
        self.process = psutil.Process(pid)
        self.port = port
        self.redis_port = redis_port

    def scrape(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            return response.read().decode()

    def sockets(self):
        """This process's TCP sockets by what they are: `clients` (accepted on its port),
        `redis`, `listening`, `other`."""
        kinds = collections.Counter()
        for conn in self.process.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                kinds["listening"] += 1
            elif conn.laddr and conn.laddr.port == self.port:
                kinds["clients"] += 1
            elif conn.raddr and conn.raddr.port == self.redis_port:
                kinds["redis"] += 1
            else:
                kinds["other"] += 1
        return kinds

    def redis_ports(self):
        """The local ports of this process's connections to Redis."""
        return {conn.laddr.port for conn in self.process.net_connections(kind="tcp")
                if conn.raddr and conn.raddr.port == self.redis_port}

    def sample(self, *, with_sockets=True):
        # Sockets first: the scrape's own connection may still be closing after it.
        sockets = dict(self.sockets()) if with_sockets else None
        text = self.scrape()
        figures = {
            "rss": self.process.memory_info().rss,
            "fds": self.process.num_fds(),
            "cpu_seconds": round(sum(self.process.cpu_times()[:2]), 2),
        }
        for name in GAUGES:
            figures[name.removeprefix("groupcast_")] = int(metric(text, name))
        if with_sockets:
            figures["sockets"] = sockets
        return figures

    def counters(self):
        """The socket counters by label, e.g. {"groupcast_dropped_total": {'reason="closed"': 3.0}}."""
        found = collections.defaultdict(dict)
        for line in self.scrape().splitlines():
            match = SAMPLE.match(line)
            if match and match[1] in COUNTERS:
                found[match[1]][match[2] or ""] = float(match[3])
        return dict(found)


class RedisPubSub:
    """The fan-out side of Redis: which group channels have subscribers, and how many
    pub/sub connections there are."""

    def __init__(self, url):
        self.client = redis.Redis.from_url(url, decode_responses=True)

    def channels(self):
        """{channel: NUMSUB} for every gc:fanout:* channel with a subscriber."""
        names = sorted(self.client.pubsub_channels(FANOUT_PATTERN))
        if not names:
            return {}
        return dict(self.client.pubsub_numsub(*names))

    def numsub(self, names):
        return dict(self.client.pubsub_numsub(*names)) if names else {}

    def pubsub_clients(self):
        return len(self.client.client_list(_type="pubsub"))

    def clients(self):
        return len(self.client.client_list())

    def census(self, ports):
        """Redis's view of the connections from `ports`: how many last ran each command,
        and the oldest idle time (a pool holding connections it no longer uses shows
        them idle since the load that opened them)."""
        by_command = collections.Counter()
        idle = []
        for client in self.client.client_list():
            if int(client["addr"].rpartition(":")[2]) in ports:
                by_command[client["cmd"]] += 1
                idle.append(int(client["idle"]))
        return {"by_last_command": dict(by_command), "idle_seconds_max": max(idle, default=None),
                "idle_seconds_min": min(idle, default=None)}

    def sample(self, groups):
        channels = self.channels()
        group_channels = {f"gc:fanout:{group}" for group in groups}
        return {
            "fanout_channels": len(channels),
            "group_channels": sum(1 for name in channels if name in group_channels),
            "group_numsub": sum(n for name, n in channels.items() if name in group_channels),
            "pubsub_clients": self.pubsub_clients(),
            "clients": self.clients(),
        }

    def close(self):
        self.client.close()


def redis_port(url):
    return urlsplit(url).port
