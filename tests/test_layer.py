"""GroupcastChannelLayer keeps the Channels layer semantics across processes (here: two
layer instances, each with its own Redis links, as two processes would have) and makes
group_send cost one PUBLISH whatever the group's size."""

import asyncio

import pytest

from service.socket.layer import GroupcastChannelLayer
from service.storage.publishing import apublish_message
from tests.conftest import eventually


@pytest.fixture
async def other(settings, prefix):
    """A second layer, as in another process."""
    layer = GroupcastChannelLayer(redis_url=settings.REDIS_URL, prefix=prefix)
    yield layer
    await layer.close_pools()


async def receive(layer, channel, timeout=5):
    return await asyncio.wait_for(layer.receive(channel), timeout)


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
            assert owner.receive_buffer.get(channel) is None or owner.receive_buffer[channel].empty()


async def test_group_discard_stops_delivery(layer, other):
    stays, leaves = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("room", stays)
    await layer.group_add("room", leaves)
    await layer.group_discard("room", leaves)
    await other.group_send("room", {"type": "chat.message", "text": "after"})
    assert (await receive(layer, stays))["text"] == "after"
    # Both members are in one process and announcements reach them in one pass.
    assert leaves not in layer.receive_buffer or layer.receive_buffer[leaves].empty()


async def test_group_send_is_one_publish_whatever_the_group_size(layer, other, sync_redis):
    members = [await layer.new_channel() for _ in range(200)]
    for channel in members:
        await layer.group_add("big", channel)
    sync_redis.config_resetstat()
    for n in range(10):
        await other.group_send("big", {"type": "tick", "n": n})
    stats = sync_redis.info("commandstats")
    assert stats["cmdstat_publish"]["calls"] == 10
    assert "cmdstat_zadd" not in stats and "cmdstat_evalsha" not in stats and "cmdstat_eval" not in stats
    for channel in members:
        assert [(await receive(layer, channel))["n"] for _ in range(10)] == list(range(10))


async def test_a_channel_added_from_another_process_still_receives(layer, other):
    channel = await other.new_channel()
    await layer.group_add("remote", channel)  # not layer's channel: kept in Redis, as channels_redis does
    await layer.group_send("remote", {"type": "x", "n": 1})
    assert (await receive(other, channel))["n"] == 1
    await layer.group_discard("remote", channel)
    keeper = await layer.new_channel()
    await layer.group_add("remote", keeper)
    await layer.group_send("remote", {"type": "x", "n": 2})
    assert (await receive(layer, keeper))["n"] == 2
    assert other.receive_buffer.get(channel) is None or other.receive_buffer[channel].empty()


async def test_group_discard_from_another_process_removes_a_local_member(layer, other):
    channel = await layer.new_channel()
    keeper = await layer.new_channel()
    await layer.group_add("room", channel)
    await layer.group_add("room", keeper)
    await other.group_discard("room", channel)
    fanout = layer.hub().fanout
    await eventually(lambda: channel not in fanout.groups["room"].channels, what="remote discard")
    await other.group_send("room", {"type": "x"})
    await receive(layer, keeper)
    assert channel not in layer.receive_buffer or layer.receive_buffer[channel].empty()


async def test_plain_channels_receive_published_messages_as_events(layer):
    channel = await layer.new_channel()
    await layer.group_add("news", channel)
    offset = await apublish_message(group="news", data={"text": "hi"})
    assert await receive(layer, channel) == {
        "type": "groupcast.message", "group": "news", "offset": offset, "data": {"text": "hi"},
    }


async def test_group_names_up_to_100_characters_are_accepted(layer):
    channel = await layer.new_channel()
    await layer.group_add("g" * 100, channel)
    with pytest.raises(TypeError):
        await layer.group_add("g" * 101, channel)
    with pytest.raises(TypeError):
        await layer.group_add("bad name", channel)


async def test_last_member_leaving_unsubscribes_the_process(layer, sync_redis, prefix):
    channel = await layer.new_channel()
    await layer.group_add("brief", channel)
    fanout_channel = f"{prefix}:fanout:brief"
    assert sync_redis.pubsub_numsub(fanout_channel)[0][1] == 1
    await layer.group_discard("brief", channel)
    await eventually(lambda: sync_redis.pubsub_numsub(fanout_channel)[0][1] == 0, what="unsubscribe")
    assert "brief" not in layer.hub().fanout.groups


async def test_an_idle_receive_outlives_the_redis_read_timeout(layer, other):
    # redis-py 8 times reads out after 5 s while channels_redis blocks in BZPOPMIN for
    # 5 s: an idle runworker must keep waiting, not crash.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive("groupcast.idle"), 6.5)
    await other.send("groupcast.idle", {"type": "wake"})
    assert await receive(layer, "groupcast.idle") == {"type": "wake"}
