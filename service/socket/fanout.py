"""Group fan-out inside one process.

A process holds one Redis subscription per group that has local members, whatever the
number of members. Each announcement is parsed and framed once, then written to every
local member. Subscribers join by offset: their history is read while live messages are
held back, then both are handed over with no gap and no duplicate. When the Redis link
drops, the process resubscribes by itself and replays what it missed from each group's
stream, so members see no gap then either.
"""

import asyncio
import collections
import json
import logging
import time

from django.conf import settings
from redis.backoff import EqualJitterBackoff

from service import metrics
from service.groups import offset_after, offset_millis
from service.socket import frames
from service.socket.frames import Frame
from service.storage import keys, wire
from service.storage.history import history_read

log = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT = 5.0
# How long a join waits for the Redis link (at start-up, or while it reconnects).
LINK_WAIT = 3.0
# Reconnecting: 0.1 s doubling to 5 s, each wait drawn from its upper half, so a fleet of
# socket processes that lost Redis together does not come back in lockstep.
RECONNECT_BACKOFF = EqualJitterBackoff(cap=5.0, base=0.1)


def reconnect_delay(failures):
    """Seconds to wait before reconnecting after `failures` failed links in a row."""
    return RECONNECT_BACKOFF.compute(failures)


class LinkSilent(ConnectionError):
    """Pings went unanswered for GROUPCAST_REDIS_PING_MISSES periods: the link hangs."""


class LocalGroup:
    """One group's members in this process and where its stream stands."""

    __slots__ = ("name", "subscribers", "joining", "catching_up", "watchers", "last_offset", "ready", "held")

    def __init__(self, name):
        self.name = name
        # WebSocket subscribers (dict as an ordered set)
        self.subscribers = {}
        # subscribers reading their history: the live frames held back for each
        self.joining = {}
        # subscribers that joined at an offset this process has not delivered yet (their
        # history read saw a message whose announcement is still on its way): each waits
        # for the first announcement after its own offset
        self.catching_up = {}
        # subscribers that asked for the group's joins and leaves
        self.watchers = {}
        self.last_offset = None
        self.ready = asyncio.get_running_loop().create_future()
        self.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        # live announcements held while the group replays a gap after a lost link
        self.held = None

    @property
    def size(self):
        return len(self.subscribers) + len(self.joining) + len(self.catching_up)


class Fanout:
    """The process's Redis link for group traffic, and every group with local members."""

    def __init__(self, *, client, link, presence):
        self.client = client
        self.link = link
        self.presence = presence
        self.groups = {}
        self.replays = asyncio.Semaphore(settings.GROUPCAST_MAX_REPLAYS)
        self.linked = asyncio.Event()
        self._pubsub = None
        self._confirmations = {}
        self._task = None
        self._task_reader = None
        self._heard = 0.0
        self._prefix = keys.fanout_prefix().encode()
        self._control = f"{keys.fanout_prefix()}~{presence.process_id}".encode()
        self._broadcast = keys.control_channel().encode()
        # called with each request the API broadcasts to the socket processes
        self.on_control = None

    def start(self):
        self._task = asyncio.ensure_future(self._run())

    async def close(self):
        if self._task is not None:
            self._task.cancel()
            await _stopped(self._task)
        await self._drop_pubsub()

    # Membership

    async def join(self, group, subscriber, since=None, presence=False, join_leave=True):
        """Add a WebSocket subscriber: `subscribed`, then history after `since`, then live.

        Live messages arriving meanwhile are held back for it and handed over by offset,
        so it sees no gap and no duplicate. With `presence`, it is listed among the
        group's members, `subscribed` lists them, and (with `join_leave`) it hears who
        joins and leaves from then on.
        """
        state = await self._local_group(group)
        held = state.joining[subscriber] = collections.deque()
        self._presence_changed(state)
        members = count = None
        try:
            history, _ = await asyncio.gather(
                history_read(self.client, group=group, since=since, cap=settings.GROUPCAST_REPLAY_MAX),
                self.presence.flush(),
            )
            if presence:
                subscriber.present.add(group)
                await self.presence.member_join(group=group, sub=subscriber.sub, info_json=subscriber.info_json)
                members, count, _ = await self.presence.members(
                    group=group, count=settings.GROUPCAST_PRESENCE_LIST_MAX
                )
        except BaseException:
            state.joining.pop(subscriber, None)
            await self._leave_presence(group, subscriber)
            await self._release(state)
            raise
        if state.joining.get(subscriber) is not held:
            return  # it left while its history was read
        if members is not None:
            members = [{"sub": m["sub"], "info": json.loads(m["info"])} for m in members]
            members = members[: settings.GROUPCAST_PRESENCE_LIST_MAX]
        subscriber.send(frames.subscribed_frame(group, history.last_offset, members, count))
        if history.trimmed:
            subscriber.send_error(
                "history_trimmed",
                f"messages after {since} are no longer retained (or are more than "
                f"{settings.GROUPCAST_REPLAY_MAX}); replaying the newest retained",
                group,
            )
        written = 0
        if history.messages:
            # A page at a time, as the client takes it; a bounded number at once.
            async with self.replays:
                async for page in history.pages():
                    if state.joining.get(subscriber) is not held:
                        break  # it left during the replay
                    written += await subscriber.replay(page, group)
        while held and state.joining.get(subscriber) is held:
            frame = held.popleft()
            if offset_after(frame.offset, history.last_offset):
                written += await subscriber.write_paced(frame)
        metrics.DELIVERIES.inc(written)
        if state.joining.get(subscriber) is not held:
            return  # it left during the replay
        del state.joining[subscriber]
        if offset_after(history.last_offset, state.last_offset):
            state.catching_up[subscriber] = history.last_offset
        else:
            state.subscribers[subscriber] = None
        if presence and join_leave:
            state.watchers[subscriber] = None
        subscriber.groups.add(group)

    async def leave(self, group, subscriber, *, keep_presence=False):
        """Take a subscriber out of a group. `keep_presence`: leave its membership to
        expire (a draining process: the client comes back elsewhere within the TTL)."""
        subscriber.groups.discard(group)
        if not keep_presence:
            await self._leave_presence(group, subscriber)
        state = self.groups.get(group)
        if state is None:
            return
        state.subscribers.pop(subscriber, None)
        state.joining.pop(subscriber, None)
        state.catching_up.pop(subscriber, None)
        state.watchers.pop(subscriber, None)
        self._presence_changed(state)
        await self._release(state)
        await self.presence.flush()

    async def _leave_presence(self, group, subscriber):
        if group in subscriber.present:
            subscriber.present.discard(group)
            await self.presence.member_leave(group=group, sub=subscriber.sub)

    def _presence_changed(self, state):
        self.presence.changed(state.name, state.size)

    async def _local_group(self, group):
        """The group's local state, subscribed in Redis and with its offset known."""
        while True:
            state = self.groups.get(group)
            if state is None:
                return await self._open_group(group)
            await state.ready
            if self.groups.get(group) is state:
                return state

    async def _open_group(self, group):
        state = self.groups[group] = LocalGroup(group)
        try:
            await self._subscribe(keys.fanout_channel(group).encode())
            history = await history_read(self.client, group=group)
            if offset_after(history.last_offset, state.last_offset):
                state.last_offset = history.last_offset
        except BaseException as error:
            if self.groups.get(group) is state:
                del self.groups[group]
            state.ready.set_exception(error)
            raise
        state.ready.set_result(None)
        return state

    async def _release(self, state):
        if state.size or self.groups.get(state.name) is not state or not state.ready.done():
            return
        del self.groups[state.name]
        if self.linked.is_set():
            try:
                await self._pubsub.unsubscribe(keys.fanout_channel(state.name))
            except Exception as error:  # the next link only resubscribes live groups
                log.info("unsubscribe from %s failed: %s", state.name, error)

    async def _subscribe(self, channel):
        try:
            await asyncio.wait_for(self.linked.wait(), LINK_WAIT)
        except TimeoutError:
            raise ConnectionError("Redis is unreachable") from None
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = confirmed
        await self._pubsub.subscribe(channel)
        await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_TIMEOUT)

    # Delivery

    def _on_message(self, channel, data):
        if channel == self._broadcast:
            if self.on_control is not None:
                self.on_control(data)
            return
        group = channel[len(self._prefix):].decode()
        state = self.groups.get(group)
        if state is None or not data:
            return
        kind = data[0]
        if kind == wire.ANNOUNCEMENT:  # the channel also carries Channels events: not ours
            offset, data_json = wire.announcement_parts(data)
            if state.held is not None:
                state.held.append((offset, data_json))
            else:
                self._deliver(state, offset, data_json)
        elif kind == wire.JOIN and state.watchers:
            sub, info_json = wire.join_parts(data)
            self._tell_watchers(state, sub, frames.join_frame(state.name, sub, info_json))
        elif kind == wire.LEAVE and state.watchers:
            sub = wire.body(data).decode()
            self._tell_watchers(state, sub, frames.leave_frame(state.name, sub))

    @staticmethod
    def _tell_watchers(state, sub, text):
        for subscriber in state.watchers:
            if subscriber.sub != sub:  # other members' joins and leaves only
                subscriber.send(text)
    def _deliver(self, state, offset, data_json):
        if not offset_after(offset, state.last_offset):
            return  # already delivered (a replay overlapping live traffic)
        started = time.perf_counter()
        state.last_offset = offset
        if state.catching_up:
            self._caught_up(state, offset)
        frame = Frame(state.name, offset, data_json)
        written = 0
        for subscriber in state.subscribers:
            written += subscriber.write(frame)
        for held in state.joining.values():
            held.append(frame)
        metrics.DELIVERIES.inc(written)
        metrics.FANOUT_SECONDS.observe(time.perf_counter() - started)
        metrics.DELIVERY_LAG.observe(max(0.0, time.time() - offset_millis(offset) / 1000))

    @staticmethod
    def _caught_up(state, offset):
        """Move the subscribers that joined before `offset` to live delivery."""
        for subscriber, joined_at in list(state.catching_up.items()):
            if offset_after(offset, joined_at):
                del state.catching_up[subscriber]
                state.subscribers[subscriber] = None

    # The Redis link

    async def _run(self):
        failures = 0  # links lost in a row, for the backoff
        while True:
            try:
                await self._link()
                failures = 0
                watchdog = asyncio.ensure_future(self._watch())
                try:
                    done, _ = await asyncio.wait(
                        [self._task_reader, watchdog], return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    watchdog.cancel()
                for task in done:
                    task.result()  # raises why the link ended
                raise ConnectionError("the link ended")  # neither task returns otherwise
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self.linked.clear()
                metrics.redis_failed("socket")
                metrics.LINK_LOSSES.labels("silent" if isinstance(error, LinkSilent) else "error").inc()
                delay = reconnect_delay(failures)
                failures += 1
                log.warning("Redis link lost (%s); reconnecting in %.2fs", error, delay)
            finally:
                await self._drop_pubsub()
            await asyncio.sleep(delay)  # back off before reconnecting

    async def _watch(self):
        """Ping the link every period it is idle; it is lost only once a ping has gone
        unanswered for GROUPCAST_REDIS_PING_MISSES periods in a row.

        Missed periods are counted, not measured as silence: a pong landing just after a
        check, or a stall of this event loop, costs at most one period, never a false
        loss (which would make /readyz answer 503 and resubscribe and replay every group).
        """
        loop = asyncio.get_running_loop()
        period = settings.GROUPCAST_REDIS_PING_SECONDS
        misses = settings.GROUPCAST_REDIS_PING_MISSES
        pinged = None  # when the unanswered ping went out, if one is outstanding
        missed = 0
        while True:
            await asyncio.sleep(period)
            if pinged is not None and self._heard >= pinged:
                pinged, missed = None, 0  # answered (anything read after a ping proves the link)
            if pinged is not None:
                missed += 1
                if missed >= misses:
                    raise LinkSilent(f"no answer to a ping for {missed} periods of {period:g}s")
            elif loop.time() - self._heard >= period / 2:
                # Idle (nothing read for half a period or more): ask for a pong. A busy
                # link proves itself with its traffic.
                pinged = loop.time()
                await self._pubsub.ping()

    async def _link(self):
        """Subscribe to every local group on a fresh connection, then replay any gap."""
        for state in self.groups.values():
            state.held = []
        self._pubsub = self.link.pubsub()
        self._heard = asyncio.get_running_loop().time()
        channels = [self._control, self._broadcast] + [keys.fanout_channel(g).encode() for g in self.groups]
        loop = asyncio.get_running_loop()
        waits = []
        for channel in channels:
            self._confirmations[channel] = loop.create_future()
            waits.append(self._confirmations[channel])
        await self._pubsub.subscribe(*channels)
        self._task_reader = asyncio.ensure_future(self._read(self._pubsub))
        confirmed = asyncio.ensure_future(asyncio.wait_for(asyncio.gather(*waits), SUBSCRIBE_TIMEOUT))
        confirmed.add_done_callback(lambda f: f.cancelled() or f.exception())
        await asyncio.wait([confirmed, self._task_reader], return_when=asyncio.FIRST_COMPLETED)
        if not confirmed.done():
            confirmed.cancel()
            await self._task_reader  # raises why the link failed
        confirmed.result()
        self.linked.set()
        metrics.redis_ok("socket")
        for state in list(self.groups.values()):
            await self._replay_gap(state)

    async def _replay_gap(self, state):
        if state.held is None:
            return
        if state.last_offset is not None:
            history = await history_read(self.client, group=state.name, since=state.last_offset)
            if history.trimmed:
                for subscriber in state.subscribers:
                    subscriber.send_error(
                        "history_trimmed",
                        "messages were trimmed from history while Redis was unreachable",
                        state.name,
                    )
            recovered = 0
            async for page in history.pages():
                for offset, data_json in page:
                    self._deliver(state, offset, data_json)
                recovered += len(page)
            metrics.RECOVERED.inc(recovered * len(state.subscribers))
        held, state.held = state.held, None
        for offset, data_json in held:
            self._deliver(state, offset, data_json)

    async def _read(self, pubsub):
        loop = asyncio.get_running_loop()
        while True:
            # No read timeout: liveness is the watchdog's job (_watch), which keeps
            # cancellation of this task clean.
            message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=None)
            self._heard = loop.time()
            if message is None:
                continue
            kind = message["type"]
            if kind == "message":
                self._on_message(message["channel"], message["data"])
            elif kind == "subscribe":
                confirmed = self._confirmations.pop(message["channel"], None)
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)

    async def _drop_pubsub(self):
        self.linked.clear()
        task, self._task_reader = self._task_reader, None
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                await pubsub.aclose()  # also ends a read in progress
            except Exception:
                pass
        if task is not None and not task.done():
            task.cancel()
            await _stopped(task)
        for confirmed in self._confirmations.values():
            if not confirmed.done():
                confirmed.set_exception(ConnectionError("Redis link lost"))
                confirmed.exception()
        self._confirmations.clear()


async def _stopped(task, timeout=2.0):
    """Wait, bounded, for a cancelled task to finish (redis-py can delay a cancellation
    that lands mid-read; the task then ends when its connection is closed)."""
    done, _ = await asyncio.wait([task], timeout=timeout)
    if not done:
        log.warning("task %r did not stop within %.0fs", task.get_name(), timeout)
