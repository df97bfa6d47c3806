"""Publishing stores and announces atomically; history reads by offset."""

import pytest

from service.storage import keys
from service.groups import offset_after
from service.storage.history import PAGE, history_last_offset, history_read
from service.storage.publishing import apublish_message, publish_message
from service.storage.clients import make_async


@pytest.fixture
async def client(redis_url):
    client = make_async(redis_url)
    yield client
    await client.aclose()


async def test_publish_stores_in_the_stream_and_announces_on_the_group_channel(client, sync_redis):
    pubsub = client.pubsub()
    await pubsub.subscribe(keys.fanout_channel("news"))
    await pubsub.get_message(timeout=5)  # the subscribe confirmation
    offset = publish_message(group="news", data={"text": "hi"})
    announcement = await pubsub.get_message(timeout=5)
    assert announcement["data"] == f'P{offset} {{"text":"hi"}}'.encode()
    [(stored_id, fields)] = sync_redis.xrange(keys.stream("news"))
    assert stored_id.decode() == offset and fields == {b"d": b'{"text":"hi"}'}
    await pubsub.aclose()


async def test_offsets_increase_in_publish_order(client):
    offsets = [await apublish_message(group="news", data=i) for i in range(20)]
    assert all(offset_after(b, a) for a, b in zip(offsets, offsets[1:]))
    history = await history_read(client, group="news", since=offsets[4])
    assert [o for o, _ in history.messages] == offsets[5:]
    assert [d for _, d in history.messages] == [str(i).encode() for i in range(5, 20)]
    assert history.last_offset == offsets[-1] and not history.trimmed


def test_once_key_makes_a_repeated_publish_return_the_first_offset(sync_redis):
    first = publish_message(group="news", data="a", once_key="job:1:news")
    again = publish_message(group="news", data="a", once_key="job:1:news")
    assert first == again
    assert sync_redis.xlen(keys.stream("news")) == 1


async def test_history_of_an_unknown_group_starts_at_origin(client):
    history = await history_read(client, group="nothing-here")
    assert history.last_offset == "0-0" and history.messages == [] and not history.trimmed
    assert history_last_offset(group="nothing-here") == "0-0"


async def replayed(history):
    return [offset async for page in history.pages() for offset, _ in page]


async def test_since_older_than_retention_is_reported_trimmed(client, settings):
    settings.GROUPCAST_HISTORY_SIZE = 10
    offsets = [await apublish_message(group="busy", data=i) for i in range(300)]
    history = await history_read(client, group="busy", since=offsets[0])
    assert history.trimmed
    retained = await replayed(history)
    assert retained and retained[-1] == offsets[-1] and len(retained) < 299
    recent = await history_read(client, group="busy", since=offsets[-3])
    assert not recent.trimmed and await replayed(recent) == offsets[-2:]


async def test_history_is_read_a_page_at_a_time_through_long_gaps(client, settings):
    settings.GROUPCAST_HISTORY_SIZE = 5000
    offsets = [await apublish_message(group="long", data=i) for i in range(1200)]
    history = await history_read(client, group="long", since="0-0")
    assert len(history.messages) == PAGE  # only the first page is read up front
    pages = [page async for page in history.pages()]
    assert max(len(page) for page in pages) == PAGE
    assert [offset for page in pages for offset, _ in page] == offsets


async def test_a_replay_is_capped_at_the_newest_messages_and_says_so(client, settings):
    settings.GROUPCAST_HISTORY_SIZE = 5000
    offsets = [await apublish_message(group="capped", data=i) for i in range(400)]
    history = await history_read(client, group="capped", since="0-0", cap=120)
    assert history.trimmed and await replayed(history) == offsets[-120:]
    under = await history_read(client, group="capped", since=offsets[-120], cap=120)
    assert not under.trimmed and await replayed(under) == offsets[-119:]


async def test_group_stream_expires_after_the_history_ttl(client, settings, sync_redis):
    settings.GROUPCAST_HISTORY_TTL = 100
    await apublish_message(group="short", data=1)
    assert 0 < sync_redis.ttl(keys.stream("short")) <= 100


async def test_concurrent_async_publishes_batched_together_each_get_their_own_offset_in_order(sync_redis):
    import asyncio

    before = sync_redis.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    offsets = await asyncio.gather(*(apublish_message(group=f"batch.{i % 3}", data=i) for i in range(30)))
    for g in range(3):  # each group's messages stored in the order they were published
        stored = sync_redis.xrange(keys.stream(f"batch.{g}"))
        assert [fields[b"d"] for _, fields in stored] == [str(i).encode() for i in range(g, 30, 3)]
        assert [entry_id.decode() for entry_id, _ in stored] == offsets[g::3]
    assert sync_redis.info("commandstats")["cmdstat_evalsha"]["calls"] - before == 30


async def test_a_batch_recovers_from_a_flushed_script_cache_and_fails_only_the_bad_publish(sync_redis):
    import asyncio

    import redis

    await apublish_message(group="warm", data=0)  # the script is loaded
    sync_redis.script_flush()
    sync_redis.set(keys.stream("wrongtype"), "not a stream")  # its XADD fails
    results = await asyncio.gather(
        apublish_message(group="ok.1", data=1),
        apublish_message(group="wrongtype", data=2),
        apublish_message(group="ok.2", data=3),
        return_exceptions=True,
    )
    assert isinstance(results[1], redis.ResponseError)
    assert [len(sync_redis.xrange(keys.stream(g))) for g in ("ok.1", "ok.2")] == [1, 1]
    assert all(isinstance(r, str) for r in (results[0], results[2]))


async def test_a_publish_made_in_the_next_pass_of_the_loop_joins_the_same_round_trip(sync_redis):
    # a request read in the next pass reaches the publisher only then (its task starts a
    # pass after its bytes): it shares the round trip of the one before it
    import asyncio

    await apublish_message(group="warm", data=0)  # connected, script loaded

    def reads():
        # read events Redis processed: one per round trip of a small pipeline, one per INFO
        return sync_redis.info("stats")["total_reads_processed"]

    before = reads()
    first = asyncio.ensure_future(apublish_message(group="pass.1", data=1))
    await asyncio.sleep(0)  # the next pass
    second = asyncio.ensure_future(apublish_message(group="pass.2", data=2))
    await asyncio.gather(first, second)
    assert reads() - before == 2  # one pipeline for both, and this INFO
