"""Redis clients for every role, all from REDIS_URL.

REDIS_URL is redis://, rediss:// or unix:// for one server, or
redis+sentinel://[:password@]host:port[,host:port...]/<master name>[/db] to follow a
Sentinel-managed master across failovers.
"""

import asyncio
import functools
import weakref
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from service import metrics

# Fail fast: a publish must answer 503 within a couple of seconds, not hang.
CLIENT_OPTIONS = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "socket_keepalive": True,
    "health_check_interval": 30,
}
# Bounded and blocking: a burst of handshakes waits for a connection instead of failing.
ASYNC_POOL_SIZE = 64


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


def _is_sentinel(url):
    return url.startswith("redis+sentinel://")


@functools.lru_cache(maxsize=16)
def url_db(url):
    """The database number a Redis URL selects (0 when it names none); cached, since every
    publish names its group's channel with it."""
    if _is_sentinel(url):
        return parse_sentinel_url(url).db
    return int(redis.connection.parse_url(url).get("db", 0))


def host_db(host):
    """The database number of a channels_redis `hosts` entry (as decode_hosts gives it)."""
    if "address" in host:
        return url_db(host["address"])
    return int(host.get("db", 0))


_sync_client = None


def redis_sync():
    """The process's synchronous client (http role and management commands)."""
    global _sync_client
    if _sync_client is None:
        _sync_client = _make_sync(settings.REDIS_URL)
    return _sync_client


def _make_sync(url):
    if _is_sentinel(url):
        address = parse_sentinel_url(url)
        sentinel = redis.sentinel.Sentinel(address.sentinels, **CLIENT_OPTIONS)
        return sentinel.master_for(
            address.master, db=address.db, password=address.password, **CLIENT_OPTIONS
        )
    return redis.Redis.from_url(url, **CLIENT_OPTIONS)


_async_clients = weakref.WeakKeyDictionary()


def redis_async():
    """The client for the running event loop (socket and worker roles)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        client = _async_clients[loop] = make_async(settings.REDIS_URL)
    return client


def make_async(url, **overrides):
    # A pool built here would give its connections no retries at all (redis-py applies
    # its default retry only to pools it builds itself): a connection left stale by a
    # Redis restart must be re-established, not surface as an error.
    options = CLIENT_OPTIONS | {"retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3)}
    options |= overrides
    if _is_sentinel(url):
        address = parse_sentinel_url(url)
        sentinel = redis.asyncio.sentinel.Sentinel(address.sentinels, **options)
        return sentinel.master_for(
            address.master, db=address.db, password=address.password, **options
        )
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=ASYNC_POOL_SIZE, timeout=10, **options
    )
    return redis.asyncio.Redis(connection_pool=pool)


# channels_redis blocks in BZPOPMIN for up to 5 s; redis-py 8's default 5 s read timeout
# would race it and kill the receive loop, so the layer's reads get more room.
LAYER_READ_TIMEOUT = 15


def channel_layer_host(url):
    """channels_redis's description of the same server."""
    if _is_sentinel(url):
        address = parse_sentinel_url(url)
        return {
            "sentinels": address.sentinels,
            "master_name": address.master,
            "db": address.db,
            "password": address.password,
            "socket_connect_timeout": 2,
            "socket_timeout": LAYER_READ_TIMEOUT,
        }
    return {
        "address": url,
        "max_connections": 1000,
        "socket_connect_timeout": 2,
        "socket_timeout": LAYER_READ_TIMEOUT,
    }


def redis_reachable(role):
    """Ping Redis with the process's client, recording the outcome in `role`'s metrics."""
    try:
        redis_sync().ping()
    except (redis.RedisError, OSError):
        metrics.redis_failed(role)
        return False
    metrics.redis_ok(role)
    return True
