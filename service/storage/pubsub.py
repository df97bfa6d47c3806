"""Pub/sub subscriptions held on as few connections as the Redis topology allows.

On one server (or a Sentinel-managed master) one connection holds every channel. On a
Redis Cluster the channels are shard channels (SSUBSCRIBE), each served by the master
that owns its slot: one connection per such master, whatever the number of channels.

Each connection (a Link) subscribes its channels, reads, and pings when idle. Its owner
hears every message, and which channels went dark when the link was lost (`on_lost`)
and which are back once resubscribed (`on_confirmed`), to replay what it missed from
history. On a cluster a lost link, a MOVED reply or a slot moving away (the server
unsubscribes its channels) refreshes the slot map, and each channel moves to the link of
the master that owns it now.
"""

import asyncio
import inspect
import logging
import math

from redis.backoff import EqualJitterBackoff
from redis.crc import key_slot

from service.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# How long a subscribe waits for its link (at start-up, or while it reconnects).
LINK_WAIT = 3.0
SUBSCRIBE_TIMEOUT = 5.0
# Reconnecting: 0.1 s doubling to 5 s, each wait drawn from its upper half, so a fleet of
# processes that lost Redis together does not come back in lockstep.
RECONNECT_BACKOFF = EqualJitterBackoff(cap=5.0, base=0.1)


def reconnect_delay(failures):
    """Seconds to wait before reconnecting after `failures` failed links in a row."""
    return RECONNECT_BACKOFF.compute(failures)


class LinkSilent(ConnectionError):
    """Pings went unanswered for `ping_misses` periods: the link hangs."""


class Server:
    """One Redis server: every channel on one link."""

    sharded = False

    def __init__(self, make_client, close=None):
        self.make_client = make_client  # a client for the link (no silent retries)
        self._close = close

    async def owner(self, channel):
        return "server"

    def client(self, owner):
        return self.make_client()

    def shard(self, owner):
        return None

    async def refresh(self):
        pass

    async def close(self):
        if self._close is not None:
            await self._close()


class Cluster:
    """A Redis Cluster: each channel on the link to the master that owns its slot."""

    sharded = True

    def __init__(self, cluster, make_node_client):
        self.cluster = cluster  # redis.asyncio.RedisCluster: the slot map
        self.make_node_client = make_node_client  # (host, port) -> client for a link
        self.clients = {}

    async def owner(self, channel):
        await self.cluster.initialize()
        return self.cluster.nodes_manager.get_node_from_slot(key_slot(channel)).name

    def client(self, owner):
        client = self.clients.get(owner)
        if client is None:
            host, _, port = owner.rpartition(":")
            client = self.clients[owner] = self.make_node_client(host, int(port))
        return client

    def shard(self, owner):
        return shard_index(self.cluster.nodes_manager.slots_cache, owner)

    async def refresh(self):
        try:
            await self.cluster.nodes_manager.initialize()
        except Exception as error:  # every node unreachable for now: the next loss retries
            log.info("could not refresh the cluster's slot map: %s", error)

    async def close(self):
        for client in self.clients.values():
            await client.aclose()
        self.clients.clear()


def shard_index(slots_cache, name):
    """A master's index among the masters, by the first slot each serves: a metric label
    bounded by the number of shards (None for a node that serves no slot)."""
    firsts = {}
    for slot, nodes in sorted(slots_cache.items()):
        if nodes:
            firsts.setdefault(nodes[0].name, slot)
    ordered = sorted(firsts, key=firsts.get)
    return ordered.index(name) if name in ordered else None


class Subscriptions:
    """The channels one process is subscribed to, on their links.

    `on_message(channel, data)` hears each message (its result is awaited if it is
    awaitable, so an owner may process messages in order); `on_lost(channel)` and
    `on_confirmed(channel)` say when a channel went dark and when it is subscribed again
    (or for the first time); `on_link(link, error)` when a link comes up (error None) or
    is lost. Channels are bytes.
    """

    def __init__(self, topology, *, on_message, on_lost=None, on_confirmed=None, on_link=None,
                 ping_seconds=5.0, ping_misses=3):
        self.topology = topology
        self.on_message = on_message
        self.on_lost = on_lost or _ignore
        self.on_confirmed = on_confirmed or _ignore
        self.on_link = on_link or _ignore
        self.ping_seconds = ping_seconds
        self.ping_misses = ping_misses
        self.links = {}  # owner -> Link
        self.where = {}  # channel -> Link
        self._moving = None
        self._closed = False

    @property
    def linked(self):
        """True while every link is up (and there is one)."""
        return bool(self.links) and all(link.up.is_set() for link in self.links.values())

    def down(self):
        """The links that are down, by shard ("shard 1 (host:port)") or "server"."""
        return sorted(
            (f"shard {link.shard} ({link.owner})" if link.shard is not None else "server")
            for link in self.links.values() if not link.up.is_set()
        )

    async def subscribe(self, channel):
        """Subscribe and wait for the server's confirmation (ConnectionError when its
        link does not come up within LINK_WAIT, or the link is lost meanwhile)."""
        link = self.where.get(channel)
        if link is None:
            owner = await self.topology.owner(channel)
            link = self.where.get(channel) or self._link(owner)
            link.channels.add(channel)
            self.where[channel] = link
        await link.confirm(channel)

    def keep(self, channel):
        """Subscribe in the background, retrying until it holds (a channel the process
        always listens on, whether or not Redis is up yet)."""
        async def subscribed():
            failures = 0
            while not self._closed:
                try:
                    return await self.subscribe(channel)
                except Exception as error:
                    delay = reconnect_delay(failures)
                    failures += 1
                    log.info("subscribing to %s failed (%s); retrying in %.2fs", channel, error, delay)
                    await asyncio.sleep(delay)

        task = asyncio.ensure_future(subscribed())
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    async def unsubscribe(self, channel):
        link = self.where.pop(channel, None)
        if link is None:
            return
        link.channels.discard(channel)
        await link.drop(channel)

    async def close(self):
        self._closed = True
        for link in list(self.links.values()):
            await link.close()
        self.links.clear()
        self.where.clear()
        await self.topology.close()

    def _link(self, owner):
        link = self.links.get(owner)
        if link is None:
            link = self.links[owner] = Link(self, owner)
            link.start()
        return link

    async def relocate(self, channels=None):
        """Refresh the slot map and move each channel (or every channel) to the link of
        its owner now; a link left with no channel stops."""
        if not self.topology.sharded or self._closed:
            return
        await self.topology.refresh()
        for channel in list(self.where if channels is None else channels):
            link = self.where.get(channel)
            if link is None:
                continue
            try:
                owner = await self.topology.owner(channel)
            except Exception:  # its slot is not served yet: the next loss retries
                continue
            if owner == link.owner:
                continue
            link.channels.discard(channel)
            link.live.discard(channel)
            target = self.where[channel] = self._link(owner)
            target.channels.add(channel)
            if target.up.is_set():
                target.send_subscribe([channel])
        for owner, link in list(self.links.items()):
            if not link.channels:
                del self.links[owner]
                await link.close()

    def _relocate_soon(self, channels=None):
        if self.topology.sharded and not self._closed:
            task = asyncio.ensure_future(self.relocate(channels))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())


class Link:
    """One pub/sub connection, to the server or to one cluster master, and its channels."""

    def __init__(self, subscriptions, owner):
        self.subscriptions = subscriptions
        self.topology = subscriptions.topology
        self.owner = owner
        self.shard = subscriptions.topology.shard(owner)
        self.channels = set()  # wanted on this link
        self.live = set()  # confirmed on the current connection
        self.waiting = {}  # channel -> future of its confirmation
        self.up = asyncio.Event()
        self.pubsub = None
        self.reader = None
        self.heard = 0.0
        self.task = None
        self._sent = set()  # tasks sending (un)subscribes
        self._subscribe = "ssubscribe" if self.topology.sharded else "subscribe"
        self._unsubscribe = "sunsubscribe" if self.topology.sharded else "unsubscribe"

    def start(self):
        self.task = asyncio.ensure_future(self._run())

    async def close(self):
        if self.task is not None and self.task is not asyncio.current_task():
            await cancel_and_wait([self.task])
        await self._drop_connection(ConnectionError("the link closed"))

    async def confirm(self, channel):
        try:
            await asyncio.wait_for(self.up.wait(), LINK_WAIT)
        except TimeoutError:
            raise ConnectionError("Redis is unreachable") from None
        if channel in self.live:
            return
        if self.pubsub is None:
            # Lost again between `up` being set and this waiter running (a Redis going
            # down as the link came up): the caller sees the outage, not an AttributeError.
            raise ConnectionError("Redis link lost")
        confirmed = self.waiting.get(channel)
        if confirmed is None:
            confirmed = self._expect(channel)
            await getattr(self.pubsub, self._subscribe)(channel)
        await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_TIMEOUT)

    def send_subscribe(self, channels):
        """Subscribe `channels` on the live connection, in the background (their
        confirmations reach on_confirmed)."""
        for channel in channels:
            self._expect(channel)
        self._background(self._send(self._subscribe, channels))

    async def drop(self, channel):
        self.live.discard(channel)
        if self.up.is_set():
            try:
                await getattr(self.pubsub, self._unsubscribe)(channel)
            except Exception as error:  # a new connection subscribes only to wanted channels
                log.info("unsubscribe from %s failed: %s", channel, error)

    def _expect(self, channel):
        confirmed = self.waiting.get(channel)
        if confirmed is None:
            confirmed = self.waiting[channel] = asyncio.get_running_loop().create_future()
            confirmed.add_done_callback(lambda f: f.cancelled() or f.exception())
        return confirmed

    async def _send(self, command, channels):
        pubsub = self.pubsub
        try:
            for batch in self._by_slot(channels):
                await getattr(pubsub, command)(*batch)
        except Exception as error:  # the reader sees the link fail too
            log.info("%s on %s failed: %s", command, self.owner, error)

    def _by_slot(self, channels):
        """One command per slot on a cluster (a command may not cross slots)."""
        if not self.topology.sharded:
            return [list(channels)] if channels else []
        batches = {}
        for channel in channels:
            batches.setdefault(key_slot(channel), []).append(channel)
        return list(batches.values())

    def _background(self, coroutine):
        task = asyncio.ensure_future(coroutine)
        self._sent.add(task)
        task.add_done_callback(self._sent.discard)

    # The connection

    async def _run(self):
        failures = 0  # links lost in a row, for the backoff
        while True:
            reader = watchdog = None
            try:
                reader = await self._connect()
                failures = 0
                self.subscriptions.on_link(self, None)
                watchdog = asyncio.ensure_future(self._watch())
                done, _ = await asyncio.wait([reader, watchdog], return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # raises why the link ended
                raise ConnectionError("the link ended")  # neither task returns otherwise
            except asyncio.CancelledError:
                raise
            except Exception as error:
                delay = reconnect_delay(failures)
                failures += 1
                log.warning("Redis link to %s lost (%s); reconnecting in %.2fs", self.owner, error, delay)
                await self._drop_connection(error, reader, watchdog)
                self.subscriptions.on_link(self, error)
                # on a cluster the channels may have moved (failover, resharding)
                await self.subscriptions.relocate(list(self.channels))
                if self.subscriptions.links.get(self.owner) is not self:
                    return  # nothing left here: relocate() closed this link
            finally:
                if watchdog is not None:
                    watchdog.cancel()
            await asyncio.sleep(delay)

    async def _connect(self):
        """A fresh connection with every channel of the link subscribed and confirmed;
        returns its reader."""
        self.pubsub = self.topology.client(self.owner).pubsub(push_handler_func=_as_received)
        self.heard = asyncio.get_running_loop().time()
        channels = list(self.channels)
        waits = [self._expect(channel) for channel in channels]
        if channels:
            for batch in self._by_slot(channels):
                await getattr(self.pubsub, self._subscribe)(*batch)
        else:
            waits = [self._expect(b"")]  # nothing to subscribe: a pong proves the connection
            await self.pubsub.ping()
        reader = self.reader = asyncio.ensure_future(self._read())
        confirmed = asyncio.ensure_future(asyncio.wait_for(asyncio.gather(*waits), SUBSCRIBE_TIMEOUT))
        try:
            await asyncio.wait([confirmed, reader], return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                reader.result()  # raises why the link failed
                raise ConnectionError("the link ended")
            confirmed.result()
        except BaseException:
            confirmed.cancel()
            raise
        self.up.set()
        return reader

    async def _read(self):
        loop = asyncio.get_running_loop()
        subscriptions = self.subscriptions
        pubsub = self.pubsub
        connection = pubsub.connection
        while True:
            # Announcements straight from the connection: redis-py's get_message adds a
            # health check, a retry wrapper, a dict and an observability hook to every
            # message (16% of a socket process fanning out to groups of 10), and this link
            # reconnects by itself. No read timeout: liveness is the watchdog's job, which
            # keeps cancelling this task clean.
            response = await connection.read_response(
                timeout=math.inf, disconnect_on_error=False, push_request=True
            )
            self.heard = loop.time()
            kind = response[0] if isinstance(response, list) else None
            if kind == b"message" or kind == b"smessage":
                outcome = subscriptions.on_message(response[1], response[2])
                if inspect.isawaitable(outcome):
                    await outcome
                continue
            if response in pubsub.health_check_response:
                continue
            # The rest through redis-py, which keeps its books on (un)subscribes.
            message = await pubsub.handle_message(response)
            if message is None:
                continue
            kind = message["type"]
            if kind == "subscribe" or kind == "ssubscribe":
                self._confirmed(message["channel"])
            elif kind == "pong":
                self._confirmed(b"")
            elif (kind == "sunsubscribe" or kind == "unsubscribe") and message["channel"] in self.channels:
                # The server dropped a channel still wanted: its slot moved to another
                # master. It is dark until subscribed there.
                channel = message["channel"]
                self.live.discard(channel)
                self.subscriptions.on_lost(channel)
                self.subscriptions._relocate_soon([channel])

    def _confirmed(self, channel):
        confirmed = self.waiting.pop(channel, None)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(None)
        if channel in self.channels:
            self.live.add(channel)
            self.subscriptions.on_confirmed(channel)

    async def _watch(self):
        """Ping the link every period it is idle; it is lost only once a ping has gone
        unanswered for `ping_misses` periods in a row.

        Missed periods are counted, not measured as silence: a pong landing just after a
        check, or a stall of this event loop, costs at most one period, never a false
        loss (which would resubscribe and replay every channel of the link).
        """
        loop = asyncio.get_running_loop()
        period = self.subscriptions.ping_seconds
        misses = self.subscriptions.ping_misses
        pinged = None  # when the unanswered ping went out, if one is outstanding
        missed = 0
        pubsub = self.pubsub  # this connection's: a drop clears self.pubsub under a sleeping watchdog
        while True:
            await asyncio.sleep(period)
            if pinged is not None and self.heard >= pinged:
                pinged, missed = None, 0  # answered (anything read after a ping proves the link)
            if pinged is not None:
                missed += 1
                if missed >= misses:
                    raise LinkSilent(f"no answer to a ping for {missed} periods of {period:g}s")
            elif loop.time() - self.heard >= period / 2:
                # Idle (nothing read for half a period or more): ask for a pong. A busy
                # link proves itself with its traffic.
                pinged = loop.time()
                await pubsub.ping()

    async def _drop_connection(self, error, *tasks):
        was_up = self.up.is_set()
        self.up.clear()
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()  # also ends a read in progress
            except Exception:
                pass
        await cancel_and_wait([task for task in (*tasks, self.reader) if task is not None])
        self.reader = None
        for confirmed in self.waiting.values():
            if not confirmed.done():
                confirmed.set_exception(ConnectionError(f"Redis link lost ({error})"))
        self.waiting.clear()
        lost, self.live = self.live, set()
        if was_up:
            for channel in lost:
                self.subscriptions.on_lost(channel)


async def _as_received(message):
    """Every message of the link as it came: redis-py's own handler formats each one into
    a debug log line that is then dropped (a getLogger and a str() of the message per
    announcement)."""
    return message


def _ignore(*args):
    pass
