"""The fan-out and its subscribers, driven through the hub against a real Redis: the join
handover, the replay after a lost link, and the slow-client policy. Subscribers write
through the production AsgiSink into a list, as a client would read them."""

import asyncio
import json

import pytest

from service import metrics
from service.socket.sinks import AsgiSink
from service.socket.subscribers import TOO_SLOW, Subscriber
from service.storage import keys, wire
from service.storage.publishing import apublish_message
from service.tokens import token_issue, token_verify
from tests.conftest import eventually


class Client:
    """What one subscriber's client has been sent, decoded."""

    def __init__(self, name, blocked=False):
        self.name = name
        self.sent = []
        self.unblocked = asyncio.Event()
        if not blocked:
            self.unblocked.set()
        self.subscriber = Subscriber(
            channel_name=f"test.{name}!", sink=AsgiSink(self.send),
            claims=token_verify(token_issue(sub=name, groups=["g"], ttl=600)),
        )

    async def send(self, message):
        await self.unblocked.wait()  # a client that reads nothing holds the writer here
        self.sent.append(message)

    def frames(self, kind=None):
        frames = [json.loads(m["text"]) for m in self.sent if m["type"] == "websocket.send"]
        return [f for f in frames if kind is None or f["type"] == kind]

    def offsets(self):
        return [frame["offset"] for frame in self.frames("message")]

    def close_code(self):
        return next((m["code"] for m in self.sent if m["type"] == "websocket.close"), None)


@pytest.fixture
async def linked(hub):
    await eventually(lambda: hub.linked, what="the Redis link")
    yield hub
    for subscriber in list(hub.subscribers.values()):
        subscriber.sink.stop()


async def join(hub, client, since=None):
    hub.attach(client.subscriber)
    await hub.join("g", client.subscriber, since=since)


async def test_an_announcement_arriving_during_the_history_read_is_held_and_handed_over_once(hub, linked, sync_redis):
    before = await apublish_message(group="g", data="before")
    member = Client("member")
    await join(hub, member)
    # Store two messages and announce only the first: the joiner's history read sees
    # both, live delivery has seen one, and the second's announcement arrives after.
    stored = [sync_redis.xadd(keys.stream("g"), {"d": json.dumps(n)}).decode() for n in (1, 2)]
    sync_redis.publish(keys.fanout_channel("g"), wire.announcement(stored[0], b"1"))
    await eventually(lambda: member.offsets() == stored[:1], what="the first announcement")
    joiner = Client("joiner")
    await join(hub, joiner, since=before)
    subscribed = await eventually(lambda: joiner.frames("subscribed"), what="subscribed")
    assert subscribed[0]["offset"] == stored[1]
    sync_redis.publish(keys.fanout_channel("g"), wire.announcement(stored[1], b"2"))
    after = await apublish_message(group="g", data="after")
    await eventually(lambda: joiner.offsets()[-1:] == [after], what="the live message")
    await eventually(lambda: member.offsets()[-1:] == [after], what="the member's live message")
    assert joiner.offsets() == [*stored, after]
    assert member.offsets() == [*stored, after]


async def test_messages_published_while_the_link_is_down_are_replayed_in_order_once(hub, linked, sync_redis):
    client = Client("client")
    await join(hub, client)
    first = await apublish_message(group="g", data=0)
    await eventually(lambda: client.offsets() == [first], what="the first message")
    sync_redis.client_kill_filter(_type="pubsub")
    await eventually(lambda: not hub.linked, what="the link to drop")
    missed = [await apublish_message(group="g", data=n) for n in range(1, 6)]
    await eventually(lambda: hub.linked, timeout=10, what="the link to come back")
    live = await apublish_message(group="g", data=6)
    await eventually(lambda: client.offsets()[-1:] == [live], what="the live message")
    assert client.offsets() == [first, *missed, live]


async def test_a_client_that_reads_nothing_is_closed_with_4008_and_counted(hub, linked, settings):
    settings.GROUPCAST_SEND_QUEUE_BYTES = 4096
    stuck = Client("stuck", blocked=True)
    await join(hub, stuck)
    dropped = metrics.DROPPED.labels("slow_client")._value.get()
    for n in range(40):
        await apublish_message(group="g", data="x" * 200 + str(n))
    await eventually(lambda: stuck.subscriber.close_code == TOO_SLOW, what="the 4008 close")
    assert metrics.DROPPED.labels("slow_client")._value.get() == dropped + 1
    stuck.unblocked.set()
    await eventually(lambda: stuck.close_code() == TOO_SLOW, what="the close frame")
    assert stuck.sent[-1]["type"] == "websocket.close"  # nothing is written after the close


def announce_at_once(sync_redis, messages):
    """Store each (data) and announce them all in one round trip: the socket process
    hears them together, as it hears a busy group's."""
    offsets = [store_unannounced(sync_redis, data) for data in messages]
    with sync_redis.pipeline(transaction=False) as pipe:
        for offset, data in zip(offsets, messages):
            pipe.publish(keys.fanout_channel("g"), wire.announcement(offset, json.dumps(data).encode()))
        pipe.execute()
    return offsets


def observations(histogram):
    return next(s.value for s in histogram.collect()[0].samples if s.name.endswith("_count"))


async def test_announcements_heard_together_are_written_to_each_member_together_in_order(hub, linked, sync_redis):
    members = [Client(f"member{n}") for n in range(3)]
    for member in members:
        await join(hub, member)
    deliveries, bursts = metrics.DELIVERIES._value.get(), observations(metrics.FANOUT_SECONDS)
    offsets = announce_at_once(sync_redis, list(range(20)))
    for member in members:
        await eventually(lambda: member.offsets() == offsets, what=f"{member.name}'s 20 messages")
        assert [frame["data"] for frame in member.frames("message")] == list(range(20))
    assert metrics.DELIVERIES._value.get() == deliveries + 60
    # one write per burst, not one per announcement
    assert observations(metrics.FANOUT_SECONDS) - bursts < 20


async def test_a_burst_that_fills_a_client_queue_stops_where_one_at_a_time_would(hub, linked, sync_redis, settings):
    settings.GROUPCAST_SEND_QUEUE_BYTES = 4096
    stuck = Client("stuck", blocked=True)
    await join(hub, stuck)
    dropped = {reason: metrics.DROPPED.labels(reason)._value.get() for reason in ("slow_client", "closed")}
    offsets = announce_at_once(sync_redis, ["x" * 200 + str(n) for n in range(40)])
    await eventually(lambda: stuck.subscriber.close_code == TOO_SLOW, what="the 4008 close")
    stuck.unblocked.set()
    await eventually(lambda: stuck.close_code() == TOO_SLOW, what="the close frame")
    written = stuck.offsets()
    assert written == offsets[:len(written)] and 4096 // 250 <= len(written) < 40
    # the frame that found the queue full, then every later one, counted
    assert metrics.DROPPED.labels("slow_client")._value.get() == dropped["slow_client"] + 1
    assert metrics.DROPPED.labels("closed")._value.get() == dropped["closed"] + 40 - len(written) - 1


async def member_with_a_message(hub):
    """A member of "g" and the offset of the one message it has had."""
    member = Client("member")
    await join(hub, member)
    before = await apublish_message(group="g", data="before")
    await eventually(lambda: member.offsets() == [before], what="the first message")
    return member, before


def store_unannounced(sync_redis, data):
    """Store a message in "g" without announcing it: a history read has it, live
    delivery has not."""
    return sync_redis.xadd(keys.stream("g"), {"d": json.dumps(data)}).decode()


async def test_a_catching_up_joiner_gets_from_a_burst_only_what_follows_its_offset(hub, linked, sync_redis):
    member, before = await member_with_a_message(hub)
    stored = store_unannounced(sync_redis, "stored")
    joiner = Client("joiner")
    await join(hub, joiner, since=before)
    # its announcement and the next message's, heard together: one burst across the
    # point from which the joiner is live
    after = store_unannounced(sync_redis, "after")
    with sync_redis.pipeline(transaction=False) as pipe:
        pipe.publish(keys.fanout_channel("g"), wire.announcement(stored, b'"stored"'))
        pipe.publish(keys.fanout_channel("g"), wire.announcement(after, b'"after"'))
        pipe.execute()
    await eventually(lambda: member.offsets()[-1:] == [after], what="the member's messages")
    await eventually(lambda: joiner.offsets()[-1:] == [after], what="the joiner's live message")
    assert member.offsets() == [before, stored, after]
    assert joiner.offsets() == [stored, after]  # from history, then live: once each


async def test_a_joiner_is_not_handed_again_what_the_members_burst_holds(hub, linked, sync_redis):
    member, before = await member_with_a_message(hub)
    heard = store_unannounced(sync_redis, "heard")
    joiner = Client("joiner")
    send_text = joiner.subscriber.sink.send_text

    def hear_then_send(text):
        if json.loads(text)["type"] == "subscribed":
            # the announcement of what the joiner's history holds reaches the process
            # in the pass its join ends in: the members' burst holds it then
            hub.fanout._on_message(keys.fanout_channel("g").encode(), wire.announcement(heard, b'"heard"'))
        send_text(text)

    joiner.subscriber.sink.send_text = hear_then_send
    await join(hub, joiner, since=before)
    after = await apublish_message(group="g", data="after")
    await eventually(lambda: joiner.offsets()[-1:] == [after], what="the joiner's live message")
    await eventually(lambda: member.offsets()[-1:] == [after], what="the member's live message")
    assert joiner.offsets() == [heard, after]
    assert member.offsets() == [before, heard, after]
