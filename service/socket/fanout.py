"""Group fan-out inside one process.

A process holds one Redis subscription per group that has local members, whatever the
number of members. Each announcement is parsed and framed once. A group's announcements
heard in one pass of the event loop (a burst: Redis hands a busy group's many at once)
are written to every local member together at the end of the pass, with one check and
one list extend per member rather than per message. Subscribers join by offset: their
history is read while live messages are held back, then both are handed over with no gap
and no duplicate. When the Redis link drops (or, on a Redis Cluster, a group's shard
fails over or its slot moves), the group's channel is resubscribed and what it missed is
replayed from its stream, so members see no gap then either
(service/storage/pubsub.py holds the links).
"""

import asyncio
import collections
import json
import logging
import time

from django.conf import settings

from service import metrics
from service.groups import offset_after, offset_millis
from service.socket import frames, sinks
from service.socket.frames import Burst, Frame
from service.storage import keys, wire
from service.storage.history import History, history_read
from service.storage.pubsub import LinkSilent, Subscriptions, reconnect_delay

log = logging.getLogger(__name__)


class LocalGroup:
    """One group's members in this process and where its stream stands."""

    __slots__ = ("name", "channel", "subscribers", "joining", "catching_up", "watchers", "last_offset", "ready",
                 "held", "dark", "recovery", "again", "burst")

    def __init__(self, name):
        self.name = name
        self.channel = keys.fanout_channel(name).encode()
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
        # live announcements held while the group's channel is dark (its link lost) and
        # while it replays the gap
        self.held = None
        self.dark = False
        self.recovery = None  # the replay task
        self.again = False  # the channel came back once more during the replay
        # what this pass delivered, not yet written to the subscribers (a Burst)
        self.burst = None

    @property
    def live(self):
        """Delivering as announced: offset known, no gap being held or replayed."""
        return self.last_offset is not None and self.held is None and not self.dark

    @property
    def size(self):
        return len(self.subscribers) + len(self.joining) + len(self.catching_up)


class Fanout:
    """The process's Redis subscriptions for group traffic, and every group with local
    members."""

    def __init__(self, *, client, topology, presence):
        self.client = client
        self.presence = presence
        self.groups = {}
        self.channels = {}  # a group's channel -> its LocalGroup
        self.replays = asyncio.Semaphore(settings.GROUPCAST_MAX_REPLAYS)
        self.subscriptions = Subscriptions(
            topology,
            on_message=self._on_message,
            on_lost=self._on_lost,
            on_confirmed=self._on_confirmed,
            on_link=self._on_link,
            ping_seconds=settings.GROUPCAST_REDIS_PING_SECONDS,
            ping_misses=settings.GROUPCAST_REDIS_PING_MISSES,
        )
        self._broadcast = keys.control_channel().encode()
        self.bursting = []  # the groups with a burst to write at the end of this pass
        # called with each request the API broadcasts to the socket processes
        self.on_control = None

    @property
    def linked(self):
        """True while every Redis link of the process is up."""
        return self.subscriptions.linked

    def start(self):
        # always listened to: it keeps a link up even with no group
        self.subscriptions.keep(self._broadcast)

    async def close(self):
        await self.subscriptions.close()

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
            history = await self._history_and_count(state, since)
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
        self._write_burst(state)  # the members' share of what the joiner was just handed
        if offset_after(history.last_offset, state.last_offset):
            state.catching_up[subscriber] = history.last_offset
        else:
            state.subscribers[subscriber] = None
        if presence and join_leave:
            state.watchers[subscriber] = None
        subscriber.groups.add(group)

    async def _history_and_count(self, state, since):
        """What a joining subscriber missed and where the group stands, once the group's
        new count here is written. Joining a group this process already follows, with no
        `since`, needs no history read: the offset it last delivered is where the
        newcomer starts, and what arrives later is held for it like any live message (a
        reconnect storm joins mostly such groups). Then only the count is awaited, with
        no gather: its two tasks and their future were ~4% of the socket process's CPU
        in a 10,000-client connect storm (py-spy)."""
        if since is None and state.live:
            history = History(state.last_offset, [], False, self.client, state.name)
            await self.presence.flush()
            return history
        history, _ = await asyncio.gather(
            history_read(self.client, group=state.name, since=since, cap=settings.GROUPCAST_REPLAY_MAX),
            self.presence.flush(),
        )
        return history

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
        self.channels[state.channel] = state
        try:
            await self.subscriptions.subscribe(state.channel)
            history = await history_read(self.client, group=group)
            if offset_after(history.last_offset, state.last_offset):
                state.last_offset = history.last_offset
        except BaseException as error:
            if self.groups.get(group) is state:
                del self.groups[group]
                del self.channels[state.channel]
            state.ready.set_exception(error)
            raise
        state.ready.set_result(None)
        return state

    async def _release(self, state):
        if state.size or self.groups.get(state.name) is not state or not state.ready.done():
            return
        del self.groups[state.name]
        del self.channels[state.channel]
        await self.subscriptions.unsubscribe(state.channel)

    # Delivery

    def _on_message(self, channel, data):
        state = self.channels.get(channel)
        if state is None or not data:
            if channel == self._broadcast and self.on_control is not None:
                self.on_control(data)
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

    def _tell_watchers(self, state, sub, text):
        self._write_burst(state)  # after the messages heard before it
        for subscriber in state.watchers:
            if subscriber.sub != sub:  # other members' joins and leaves only
                subscriber.send(text)

    def _deliver(self, state, offset, data_json):
        if not offset_after(offset, state.last_offset):
            return  # already delivered (a replay overlapping live traffic)
        if state.catching_up:
            # who joined before `offset` gets it and what follows, not the burst before it
            self._write_burst(state)
            self._caught_up(state, offset)
        state.last_offset = offset
        frame = Frame(state.name, offset, data_json)
        if state.burst is None:
            state.burst = Burst()
            if not self.bursting:
                sinks.write_at_end_of_pass(self._write_bursts)
            self.bursting.append(state)
        state.burst.add(frame)
        for held in state.joining.values():
            held.append(frame)
        metrics.DELIVERY_LAG.observe(max(0.0, time.time() - offset_millis(offset) / 1000))

    def _write_bursts(self):
        bursting, self.bursting = self.bursting, []
        for state in bursting:
            try:
                self._write_burst(state)
            except Exception:  # a bug: said loudly, and the other groups still written
                log.exception("writing the messages of %s failed", state.name)

    @staticmethod
    def _write_burst(state):
        """Write the group's burst so far to its subscribers."""
        burst, state.burst = state.burst, None
        if burst is None:
            return
        written = 0
        for subscriber in state.subscribers:
            written += subscriber.write_burst(burst)
        metrics.DELIVERIES.inc(written)
        metrics.FANOUT_SECONDS.observe(time.perf_counter() - burst.heard)

    @staticmethod
    def _caught_up(state, offset):
        """Move the subscribers that joined before `offset` to live delivery."""
        for subscriber, joined_at in list(state.catching_up.items()):
            if offset_after(offset, joined_at):
                del state.catching_up[subscriber]
                state.subscribers[subscriber] = None

    # The Redis links

    def _on_link(self, link, error):
        metrics.shard_up("socket", link.shard, error is None)
        if error is None:
            if self.linked:
                metrics.redis_ok("socket")
            return
        metrics.redis_failed("socket")
        metrics.LINK_LOSSES.labels("silent" if isinstance(error, LinkSilent) else "error").inc()

    def _on_lost(self, channel):
        """A group's channel went dark: hold what comes until its gap is replayed."""
        state = self.channels.get(channel)
        if state is not None:
            state.dark = True
            if state.held is None:
                state.held = []

    def _on_confirmed(self, channel):
        """A group's channel is subscribed again: replay what it missed, then go live."""
        state = self.channels.get(channel)
        if state is None or not state.dark:
            return
        state.dark = False
        if state.recovery is not None:
            state.again = True
        else:
            state.recovery = asyncio.ensure_future(self._recover(state))

    async def _recover(self, state):
        failures = 0
        try:
            while True:
                state.again = False
                try:
                    await self._replay_gap(state)
                except Exception as error:  # the history read failed: try again
                    delay = reconnect_delay(failures)
                    failures += 1
                    log.warning("replaying %s failed (%s); retrying in %.2fs", state.name, error, delay)
                    await asyncio.sleep(delay)
                    state.again = True
                if state.dark:
                    return  # lost again: the next confirmation replays from here
                if not state.again:
                    break
            held, state.held = state.held, None
            for offset, data_json in held:
                self._deliver(state, offset, data_json)
        finally:
            state.recovery = None

    async def _replay_gap(self, state):
        if state.last_offset is None:
            return
        history = await history_read(self.client, group=state.name, since=state.last_offset)
        if history.trimmed:
            self._write_burst(state)  # what came before the gap, before the error
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

