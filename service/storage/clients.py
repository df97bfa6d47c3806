"""Redis clients for every role, all from REDIS_URL (its forms: urls.py): one server,
a Sentinel-managed master, or a Redis Cluster."""

import asyncio
import contextlib
import functools
import logging
import weakref

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.sentinel
import redis.cluster
import redis.sentinel
from django.conf import settings
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff

from service import metrics
from service.storage.pubsub import shard_index
from service.storage.urls import is_cluster, is_sentinel, parse_cluster_url, parse_sentinel_url

# Everything that means Redis did not serve a request: redis-py's errors, the cluster
# client's own (not a RedisError: no node reachable, slots not covered) and the socket's.
REDIS_FAILURES = (redis.RedisError, redis.exceptions.RedisClusterException, OSError)

# Fail fast: a publish must answer 503 within a couple of seconds, not hang.
CLIENT_OPTIONS = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "socket_keepalive": True,
    "health_check_interval": 30,
}
# Bounded and blocking: a burst of handshakes waits for a connection instead of failing.
ASYNC_POOL_SIZE = 64
# The cluster client cannot wait for a free connection: it has room for bursts instead.
CLUSTER_POOL_SIZE = 1024


@functools.lru_cache(maxsize=16)
def url_db(url):
    """The database number a Redis URL selects (0 when it names none); cached, since every
    publish names its group's channel with it."""
    if is_sentinel(url):
        return parse_sentinel_url(url).db
    if is_cluster(url):
        return 0
    return int(redis.connection.parse_url(url).get("db", 0))


def host_db(host):
    """The database number of a channels_redis `hosts` entry (as decode_hosts gives it)."""
    if "address" in host:
        return url_db(host["address"])
    return int(host.get("db", 0))


_sync_clients = {}  # REDIS_URL -> client (one in a process; tests switch URLs)


def redis_sync():
    """The process's synchronous client (http role and management commands)."""
    url = settings.REDIS_URL
    client = _sync_clients.get(url)
    if client is None:
        client = _sync_clients[url] = _make_sync(url)
    return client


def _make_sync(url):
    if is_cluster(url):
        address = parse_cluster_url(url)
        return redis.cluster.RedisCluster(
            startup_nodes=[redis.cluster.ClusterNode(host, port) for host, port in address.seeds],
            **address.options(),
            **CLIENT_OPTIONS,
        )
    if is_sentinel(url):
        address = parse_sentinel_url(url)
        sentinel = redis.sentinel.Sentinel(address.sentinels, **CLIENT_OPTIONS)
        return sentinel.master_for(
            address.master, db=address.db, password=address.password, **CLIENT_OPTIONS
        )
    return redis.Redis.from_url(url, **CLIENT_OPTIONS)


_async_clients = weakref.WeakKeyDictionary()  # loop -> {REDIS_URL: client}


def redis_async():
    """The client for the running event loop (socket and worker roles)."""
    clients = _async_clients.setdefault(asyncio.get_running_loop(), {})
    url = settings.REDIS_URL
    client = clients.get(url)
    if client is None:
        client = clients[url] = make_async(url)
    return client


def make_async(url, **overrides):
    # A pool built here would give its connections no retries at all (redis-py applies
    # its default retry only to pools it builds itself): a connection left stale by a
    # Redis restart must be re-established, not surface as an error.
    options = CLIENT_OPTIONS | {"retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=1.0), 3)}
    options |= overrides
    if is_cluster(url):
        address = parse_cluster_url(url)
        return redis.asyncio.cluster.RedisCluster(
            startup_nodes=[redis.asyncio.cluster.ClusterNode(host, port) for host, port in address.seeds],
            # per node; the cluster client fails a command past it rather than wait
            max_connections=CLUSTER_POOL_SIZE,
            **address.options(),
            **options,
        )
    if is_sentinel(url):
        address = parse_sentinel_url(url)
        sentinel = redis.asyncio.sentinel.Sentinel(address.sentinels, **options)
        return sentinel.master_for(
            address.master, db=address.db, password=address.password, **options
        )
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url, max_connections=ASYNC_POOL_SIZE, timeout=10, **options
    )
    return redis.asyncio.Redis(connection_pool=pool)


# What a command sent to a cluster node directly (not through the cluster client, which
# follows these by itself) raises when the slot map it was routed by is stale: the node is
# gone, no longer serves the slot (MOVED, ASK: a failover, a replica where the master was),
# or the cluster is re-forming; and the cluster client's own "slot not covered". By class:
# inside a pipeline redis-py rewrites the message ("Command # 1 (...) of pipeline caused
# error: ..."), so a MOVED from the publish pipeline went unseen and publishes to the group
# answered 503 for good after a failover.
_STALE_MAP = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterException,
)


def stale_map(error):
    """True for an error that means the slot map `error`'s command was routed by is stale."""
    return isinstance(error, _STALE_MAP)


@contextlib.contextmanager
def primary_sync(key):
    """A client whose commands share one connection to the master of `key`: the server
    itself, or on a cluster its master for `key` (a script and its WAIT must share a
    connection). On a cluster a failure refreshes the slot map for the next attempt."""
    client = redis_sync()
    if not isinstance(client, redis.cluster.RedisCluster):
        yield client
        return
    try:
        yield client.get_redis_connection(client.get_node_from_key(key))
    except REDIS_FAILURES as error:
        if not stale_map(error):
            raise
        try:
            client.nodes_manager.initialize()
        except REDIS_FAILURES:
            pass  # no node answers now: the next attempt tries again
        raise redis.ConnectionError(f"the shard of {key} failed or moved ({error})") from error


_primaries = weakref.WeakKeyDictionary()  # async cluster client -> {node name: client}


@contextlib.asynccontextmanager
async def primary_async(client, key):
    """primary_sync for an async client."""
    if not isinstance(client, redis.asyncio.cluster.RedisCluster):
        yield client
        return
    await client.initialize()
    try:
        node = client.get_node_from_key(key)
        clients = _primaries.setdefault(client, {})
        primary = clients.get(node.name)
        if primary is None:
            address = parse_cluster_url(settings.REDIS_URL)
            primary = clients[node.name] = redis.asyncio.Redis(
                host=node.host, port=node.port, **address.options(), **CLIENT_OPTIONS
            )
        yield primary
    except REDIS_FAILURES as error:
        if not stale_map(error):
            raise
        try:
            await client.nodes_manager.initialize()
        except REDIS_FAILURES:
            pass
        raise redis.ConnectionError(f"the shard of {key} failed or moved ({error})") from error


def link_topology(url, client):
    """Where pub/sub links connect (service/storage/pubsub.py), for `client`, the async
    client of the same URL. A link's connection makes no silent retries: a lost link must
    be seen, so that the gap it leaves is replayed from history."""
    from service.storage import pubsub

    no_retries = {"retry": Retry(NoBackoff(), 0), "health_check_interval": 0}
    if is_cluster(url):
        address = parse_cluster_url(url)
        options = CLIENT_OPTIONS | address.options() | no_retries
        return pubsub.Cluster(client, lambda host, port: redis.asyncio.Redis(host=host, port=port, **options))
    link = make_async(url, **no_retries)
    return pubsub.Server(lambda: link, close=link.aclose)


# channels_redis blocks in BZPOPMIN for up to 5 s; redis-py 8's default 5 s read timeout
# would race it and kill the receive loop, so the layer's reads get more room.
LAYER_READ_TIMEOUT = 15


def channel_layer_host(url):
    """channels_redis's description of the same server."""
    if is_sentinel(url):
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


def redis_problem(role, keys=()):
    """None when Redis answers for `role`, else why not, recorded in the role's metrics.
    On a cluster only the masters the role depends on are asked: those of `keys`, or every
    master; each is recorded by shard, and a failure refreshes the slot map."""
    try:
        client = redis_sync()  # a cluster client asks for the slot map as it is built
        if isinstance(client, redis.cluster.RedisCluster):
            problem = _shards_problem(role, client, keys)
        else:
            client.ping()
            problem = None
    except REDIS_FAILURES as error:
        problem = f"redis unreachable ({error})"
    return _recorded(role, problem)


def _recorded(role, problem):
    if problem is None:
        metrics.redis_ok(role)
    else:
        metrics.redis_failed(role)
    return problem


def _masters_asked(client, keys):
    """(name, node, shard index) of the masters of `keys`, or of every master; sync and
    async cluster clients alike."""
    nodes = {node.name: node for node in
             ([client.get_node_from_key(key) for key in keys] if keys else client.get_primaries())}
    return [(name, node, shard_index(client.nodes_manager.slots_cache, name))
            for name, node in sorted(nodes.items())]


def _shards_problem(role, client, keys):
    down = []
    for name, node, shard in _masters_asked(client, keys):
        try:
            client.get_redis_connection(node).ping()
            metrics.shard_up(role, shard, True)
        except REDIS_FAILURES as error:
            metrics.shard_up(role, shard, False)
            down.append(f"shard {shard} ({name}): {error}")
    if not down:
        return None
    try:
        client.nodes_manager.initialize()  # a replica may have taken over
    except REDIS_FAILURES:
        pass
    return "redis unreachable: " + "; ".join(down)


async def aredis_problem(role, keys=()):
    """redis_problem for async code (the worker's probes)."""
    try:
        client = redis_async()
        if isinstance(client, redis.asyncio.cluster.RedisCluster):
            problem = await _ashards_problem(role, client, keys)
        else:
            await client.ping()
            problem = None
    except REDIS_FAILURES as error:
        problem = f"redis unreachable ({error})"
    return _recorded(role, problem)


async def _ashards_problem(role, client, keys):
    await client.initialize()
    down = []
    for name, node, shard in _masters_asked(client, keys):
        try:
            await client.execute_command("PING", target_nodes=node)
            metrics.shard_up(role, shard, True)
        except REDIS_FAILURES as error:
            metrics.shard_up(role, shard, False)
            down.append(f"shard {shard} ({name}): {error}")
    if not down:
        return None
    try:
        await client.nodes_manager.initialize()
    except REDIS_FAILURES:
        pass
    return "redis unreachable: " + "; ".join(down)


def cluster_problem(url, timeout=2.0):
    """Why a cluster REDIS_URL cannot serve, asked of its seed nodes, or None: a seed that
    is not a cluster node, no seed answering, or slots that no master serves."""
    address = parse_cluster_url(url)
    failures = []
    for host, port in address.seeds:
        client = redis.Redis(host=host, port=port, socket_connect_timeout=timeout, socket_timeout=timeout,
                             decode_responses=True, **address.options())
        try:
            info = client.execute_command("CLUSTER INFO")
        except redis.ResponseError as error:
            if "cluster support disabled" in str(error).lower():
                return (f"{host}:{port} is not a Redis Cluster node (cluster support disabled): "
                        f"REDIS_URL=redis://{host}:{port} names a single server")
            failures.append(f"{host}:{port}: {error}")
            continue
        except REDIS_FAILURES as error:
            failures.append(f"{host}:{port}: {error}")
            continue
        finally:
            client.close()
        state, assigned = info.get("cluster_state"), int(info.get("cluster_slots_assigned", 0))
        if state != "ok" or assigned < 16384:
            return (f"the Redis Cluster does not serve every slot ({assigned} of 16384 assigned, "
                    f"cluster_state {state}): create or repair it (redis-cli --cluster create / fix)")
        return None
    return "no seed node of the Redis Cluster answers (" + "; ".join(failures) + ")"


def startup_check(role):
    """At a role's start, say clearly what is wrong with a cluster REDIS_URL. A seed that
    is not a cluster node is a configuration error: the process stops. Nothing answering
    yet, or slots not all served, may be a cluster still starting: the process waits
    (its /readyz says why) and logs the problem."""
    url = settings.REDIS_URL
    if not is_cluster(url):
        return
    problem = cluster_problem(url)
    if problem is None:
        return
    if "not a Redis Cluster node" in problem:
        raise SystemExit(f"REDIS_URL: {problem}")
    logging.getLogger("service.storage").error("REDIS_URL: %s (%s keeps trying)", problem, role)
