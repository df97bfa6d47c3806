"""GroupcastChannelLayer keeps channels_redis's semantics across processes (here: layer
instances with their own threads and Redis links, as separate processes would have) and
makes group_send cost one PUBLISH whatever the group's size. channels_redis's own suite
runs against it too (tests/upstream_channels_redis)."""

import asyncio
import threading

import pytest
from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels_redis.core import RedisChannelLayer

from service.layer import GroupcastChannelLayer
from service.storage.publishing import apublish_message
from service.tasks import cancel_and_wait
from tests.conftest import eventually


@pytest.fixture
async def other(settings, prefix):
    """A second layer, as in another process."""
    layer = GroupcastChannelLayer(redis_url=settings.REDIS_URL, prefix=prefix)
    yield layer
    await layer.flush()
    await layer.close_pools()


@pytest.fixture
async def stock(settings, prefix):
    """channels_redis itself on the same Redis and prefix, as a process not yet migrated."""
    layer = RedisChannelLayer(hosts=[settings.REDIS_URL], prefix=prefix)
    yield layer
    await layer.close_pools()


async def receive(layer, channel, timeout=5):
    return await asyncio.wait_for(layer.receive(channel), timeout)


async def nothing_for(layer, channel, seconds=0.5):
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(channel), seconds)


async def test_send_to_a_process_specific_channel_of_another_process(layer, other):
    channel = await other.new_channel()
    await layer.send(channel, {"type": "hello", "n": 1})
    assert await receive(other, channel) == {"type": "hello", "n": 1}


async def test_normal_channel_is_consumed_once_by_whichever_process_receives(layer, other):
    await layer.send("groupcast.test", {"type": "work", "n": 1})
    await layer.send("groupcast.test", {"type": "work", "n": 2})
    got = [await receive(other, "groupcast.test"), await receive(layer, "groupcast.test")]
    assert sorted(m["n"] for m in got) == [1, 2]


async def test_group_send_reaches_every_member_in_every_process_once(layer, other):
    here = [await layer.new_channel() for _ in range(30)]
    there = [await other.new_channel() for _ in range(30)]
    for channel in here:
        await layer.group_add("room", channel)
    for channel in there:
        await other.group_add("room", channel)
    await layer.group_send("room", {"type": "chat.message", "text": "hi"})
    for owner, channels in ((layer, here), (other, there)):
        for channel in channels:
            assert await receive(owner, channel) == {"type": "chat.message", "text": "hi"}
    await nothing_for(other, there[0])


async def test_group_send_is_one_publish_whatever_the_group_size(layer, other, sync_redis):
    members = [await layer.new_channel() for _ in range(200)]
    for channel in members:
        await layer.group_add("big", channel)
    sync_redis.config_resetstat()
    for n in range(10):
        await other.group_send("big", {"type": "tick", "n": n})
    for channel in members:
        assert [(await receive(layer, channel))["n"] for _ in range(10)] == list(range(10))
    stats = sync_redis.info("commandstats")
    # per message: one PUBLISH by the sender; in the one process with members, one write
    # of the message and one of channels_redis's crash-safe receive backup
    assert stats["cmdstat_publish"]["calls"] == 10
    assert stats["cmdstat_zadd"]["calls"] == 2 * 10


async def test_layers_with_other_prefixes_or_databases_never_see_each_others_groups(layer, settings, prefix):
    elsewhere = [
        GroupcastChannelLayer(redis_url=settings.REDIS_URL, prefix=prefix + "x"),
        GroupcastChannelLayer(redis_url=settings.REDIS_URL.rsplit("/", 1)[0] + "/3", prefix=prefix),
    ]
    try:
        strangers = [await other.new_channel() for other in elsewhere]
        for other, channel in zip(elsewhere, strangers):
            await other.group_add("room", channel)
        member = await layer.new_channel()
        await layer.group_add("room", member)
        await layer.group_send("room", {"type": "mine"})
        assert (await receive(layer, member))["type"] == "mine"
        for other, channel in zip(elsewhere, strangers):
            await nothing_for(other, channel)
    finally:
        for other in elsewhere:
            await other.flush()


async def test_with_several_hosts_every_group_reaches_every_member(settings, prefix):
    base = settings.REDIS_URL.rsplit("/", 1)[0]
    hosts = [f"{base}/{db}" for db in range(4, 8)]
    sender = GroupcastChannelLayer(hosts=hosts, prefix=prefix)
    owner = GroupcastChannelLayer(hosts=hosts, prefix=prefix)
    try:
        groups = [f"g{n}" for n in range(12)]  # hashed over all four hosts
        assert len({owner.group_host(group) for group in groups}) == 4
        members = {group: await owner.new_channel() for group in groups}
        for group, channel in members.items():
            await owner.group_add(group, channel)
        for group in groups:
            await sender.group_send(group, {"type": "hello", "group": group})
        for group, channel in members.items():
            assert (await receive(owner, channel))["group"] == group
    finally:
        await sender.flush()
        await owner.flush()


async def test_a_channel_added_here_and_from_another_process_receives_each_message_once(layer, other):
    channel = await layer.new_channel()
    await layer.group_add("room", channel)
    await other.group_add("room", channel)
    await other.group_send("room", {"type": "once"})
    assert (await receive(layer, channel))["type"] == "once"
    await nothing_for(layer, channel)


async def test_a_channel_added_only_from_another_process_still_receives(layer, other):
    channel = await other.new_channel()
    await layer.group_add("remote", channel)  # kept in Redis, as channels_redis does
    await layer.group_send("remote", {"type": "x", "n": 1})
    assert (await receive(other, channel))["n"] == 1


async def test_group_discard_by_the_owner_ends_every_membership(layer, other):
    channel = await layer.new_channel()
    await layer.group_add("room", channel)
    await other.group_add("room", channel)
    await layer.group_discard("room", channel)
    await other.group_send("room", {"type": "after"})
    await nothing_for(layer, channel)


async def test_group_discard_from_another_process_ends_a_membership_held_here(layer, other):
    channel, keeper = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("room", channel)
    await layer.group_add("room", keeper)
    await other.group_discard("room", channel)
    await eventually(lambda: channel not in layer.listener().members("room"), what="the remote discard")
    await other.group_send("room", {"type": "x"})
    await receive(layer, keeper)
    await nothing_for(layer, channel)


def test_plain_synchronous_code_on_a_new_event_loop_per_call(layer, other):
    # management commands, Celery tasks, sync views: every async_to_sync call runs on a
    # new event loop in a worker thread
    results = {}

    def sync_code():
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)("sync", channel)
        async_to_sync(other.group_send)("sync", {"type": "from.sync"})
        async_to_sync(layer.send)(channel, {"type": "direct"})
        results["messages"] = [async_to_sync(layer.receive)(channel) for _ in range(2)]
        async_to_sync(layer.group_discard)("sync", channel)
        async_to_sync(layer.flush)()

    thread = threading.Thread(target=sync_code)
    thread.start()
    thread.join(30)
    # both arrive (a send made after a group_send from another process may overtake it:
    # README, "Adopting it")
    assert sorted(m["type"] for m in results["messages"]) == ["direct", "from.sync"]


def test_a_layer_closed_just_after_a_receive_ends_its_puller(settings, prefix):
    # channels_redis's test_double_receive: two process-local channels, a message waiting
    # on each, each received and the layer closed from an event loop of its own. The
    # layer's thread stops while its puller is sending the next BZPOPMIN, where the first
    # cancellation can be lost (Python 3.11's asyncio.wait_for, in redis-py's write): a
    # puller left running was destroyed pending when the thread's loop closed.
    layer = GroupcastChannelLayer(redis_url=settings.REDIS_URL, prefix=prefix)
    channels = [async_to_sync(layer.new_channel)() for _ in range(2)]

    async def send_and_close(channel):
        await layer.send(channel, {"type": "waiting", "to": channel})
        await layer.close_pools()

    async def receive_and_close(channel):
        message = await layer.receive(channel)
        await layer.close_pools()
        return message

    for channel in channels:
        async_to_sync(send_and_close)(channel)
    for channel in reversed(channels):
        listener = layer.listener()
        assert async_to_sync(receive_and_close)(channel) == {"type": "waiting", "to": channel}
        assert listener.loop.is_closed()
        assert listener.pullers and all(task.done() for task in listener.pullers.values())


async def test_cancel_and_wait_cancels_again_a_task_that_dropped_its_cancellation():
    dropped = asyncio.Event()

    async def drops_the_first():
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            dropped.set()  # as Python 3.11's wait_for does when its future finished too
        await asyncio.sleep(30)

    task = asyncio.ensure_future(drops_the_first())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait([task], timeout=5), 2)
    assert dropped.is_set() and task.cancelled()


async def test_a_busy_consumer_fills_to_capacity_and_send_raises_channel_full(settings, prefix):
    layer = GroupcastChannelLayer(redis_url=settings.REDIS_URL, prefix=prefix, capacity=3)
    try:
        channel = await layer.new_channel()
        for n in range(3):
            await layer.send(channel, {"type": "m", "n": n})
        with pytest.raises(ChannelFull):
            await layer.send(channel, {"type": "m", "n": 3})
        assert [(await receive(layer, channel))["n"] for _ in range(3)] == [0, 1, 2]
    finally:
        await layer.flush()


async def test_group_messages_to_a_full_channel_are_skipped_and_counted(settings, prefix):
    from service import metrics

    layer = GroupcastChannelLayer(redis_url=settings.REDIS_URL, prefix=prefix, capacity=2)
    sender = GroupcastChannelLayer(redis_url=settings.REDIS_URL, prefix=prefix)
    try:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        dropped = metrics.DROPPED.labels("channel_full")._value.get()
        for n in range(4):
            await sender.group_send("room", {"type": "m", "n": n})
        await eventually(lambda: metrics.DROPPED.labels("channel_full")._value.get() == dropped + 2,
                         what="two counted drops")
        assert [(await receive(layer, channel))["n"] for _ in range(2)] == [0, 1]
        await nothing_for(layer, channel)
    finally:
        await layer.flush()
        await sender.flush()


async def test_a_send_before_a_group_send_arrives_first(layer, other):
    channel = await layer.new_channel()
    await layer.group_add("room", channel)
    for n in range(5):
        sends = [await other.send(channel, {"type": "direct", "n": m}) for m in range(3)]
        assert len(sends) == 3
        await other.group_send("room", {"type": "group", "n": n})
        got = [await receive(layer, channel) for _ in range(4)]
        assert [m["type"] for m in got] == ["direct"] * 3 + ["group"]


async def test_expiry_applies_to_group_messages(settings, prefix):
    layer = GroupcastChannelLayer(redis_url=settings.REDIS_URL, prefix=prefix, expiry=1)
    try:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        await layer.group_send("room", {"type": "old"})
        await asyncio.sleep(2.1)  # the message's age is what is under test
        await layer.group_send("room", {"type": "new"})
        assert (await receive(layer, channel))["type"] == "new"
    finally:
        await layer.flush()


async def test_plain_channels_receive_published_messages_as_events(layer):
    channel = await layer.new_channel()
    await layer.group_add("news", channel)
    offset = await apublish_message(group="news", data={"text": "hi"})
    assert await receive(layer, channel) == {
        "type": "groupcast.message", "group": "news", "offset": offset, "data": {"text": "hi"},
    }


async def test_names_are_checked_as_channels_checks_them(layer):
    channel = await layer.new_channel()
    await layer.group_add("g" * 99, channel)
    for bad in ("g" * 100, "bad name", "ünï"):
        with pytest.raises(TypeError):
            await layer.group_add(bad, channel)


async def test_last_member_leaving_unsubscribes_the_process(layer, sync_redis, prefix):
    channel = await layer.new_channel()
    await layer.group_add("brief", channel)
    group_channel = f"{prefix}:fanout:0:brief"
    assert sync_redis.pubsub_numsub(group_channel)[0][1] == 1
    await layer.group_discard("brief", channel)
    await eventually(lambda: sync_redis.pubsub_numsub(group_channel)[0][1] == 0, what="unsubscribe")
    assert layer.listener().members("brief") == []


async def test_an_idle_receive_outlives_the_redis_read_timeout(layer, other):
    # redis-py 8 times reads out after 5 s while channels_redis blocks in BZPOPMIN for
    # 5 s: an idle runworker must keep waiting, not crash.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive("groupcast.idle"), 6.5)
    await other.send("groupcast.idle", {"type": "wake"})
    assert await receive(layer, "groupcast.idle") == {"type": "wake"}


async def test_in_a_mixed_fleet_channels_redis_and_groupcast_processes_reach_each_other(settings, prefix, stock):
    migrated = GroupcastChannelLayer(redis_url=settings.REDIS_URL, prefix=prefix, mixed_fleet=True)
    try:
        theirs, ours = await stock.new_channel(), await migrated.new_channel()
        await stock.group_add("room", theirs)
        await migrated.group_add("room", ours)
        for sender in (stock, migrated):
            await sender.group_send("room", {"type": "hello", "from": type(sender).__name__})
        for owner, channel in ((stock, theirs), (migrated, ours)):
            got = [await receive(owner, channel) for _ in range(2)]
            assert sorted(m["from"] for m in got) == ["GroupcastChannelLayer", "RedisChannelLayer"]
            await nothing_for(owner, channel)
    finally:
        await migrated.flush()
