"""The forms REDIS_URL takes, parsed (no Django here: settings validate with it).

- redis://, rediss://, unix://: one server;
- redis+sentinel://[:password@]host:port[,host:port...]/<master name>[/db]: a master
  Sentinel follows across failovers;
- redis+cluster://[[user]:password@]host:port[,host:port...][/] (rediss+cluster:// for
  TLS): a Redis Cluster, given by one or more seed nodes.
"""

import functools
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "rediss+cluster")

@dataclass(frozen=True)
class SentinelAddress:
    sentinels: list
    master: str
    db: int = 0
    password: str | None = None
    options: dict = field(default_factory=dict)


def parse_sentinel_url(url):
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        sentinels.append((host or item, int(port) if host else 26379))
    path = [p for p in parts.path.split("/") if p]
    if not path:
        raise ValueError("redis+sentinel:// URL needs the master name as its path")
    return SentinelAddress(
        sentinels=sentinels,
        master=path[0],
        db=int(path[1]) if len(path) > 1 else 0,
        password=unquote(parts.password) if parts.password else None,
    )


def is_sentinel(url):
    return url.startswith("redis+sentinel://")


CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True)
class ClusterAddress:
    seeds: list
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def options(self):
        """Client options every connection to the cluster's nodes shares."""
        return {"username": self.username, "password": self.password, "ssl": self.tls}


@functools.lru_cache(maxsize=16)
def is_cluster(url):
    """True when `url` names a Redis Cluster (cached: every key name asks)."""
    return url.partition("://")[0] in CLUSTER_SCHEMES


def parse_cluster_url(url):
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    seeds = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"redis+cluster:// seed {item!r} must be host:port")
        seeds.append((host.strip("[]"), int(port)))
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError("a Redis Cluster has database 0 only: end the URL at the last port (or /0)")
    return ClusterAddress(
        seeds=seeds,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=parts.scheme == "rediss+cluster",
    )


def url_problem(url):
    """What is wrong with a REDIS_URL of the sentinel or cluster forms, or None."""
    try:
        if is_sentinel(url):
            parse_sentinel_url(url)
        elif is_cluster(url):
            parse_cluster_url(url)
    except ValueError as error:
        return str(error)
    return None
