"""POST /api/v1/batch: many messages in one request, each stored or refused on its own.

Through the http role's ASGI application (the fast path; tests/test_fast_path.py shows
Django answers the same), against the real Redis of the test run.
"""

import json
import logging

from service.storage import keys
from tests.test_fast_path import answered_503_by_a_silent_redis, batch, call, publish


def results(answer):
    assert answer["status"] == 200, answer["body"]
    return json.loads(answer["body"])["results"]


async def test_a_group_s_messages_are_stored_in_the_order_sent(apps, sync_redis):
    sent = [{"group": f"room.{n % 3}", "data": {"n": n}} for n in range(1000)]
    answered = results(await call(apps["fast"], batch(*sent)()))
    assert [r["group"] for r in answered] == [m["group"] for m in sent]
    for group in ("room.0", "room.1", "room.2"):
        stored = sync_redis.xrange(keys.stream(group))
        assert [o.decode() for o, _ in stored] == [r["offset"] for r in answered if r["group"] == group]
        assert [json.loads(fields[b"d"]) for _, fields in stored] == [m["data"] for m in sent if m["group"] == group]


async def test_an_idempotency_key_is_shared_with_single_publishes_of_the_same_group(apps, sync_redis):
    first = json.loads((await call(apps["fast"], publish("news", HTTP_IDEMPOTENCY_KEY="k-1")()))["body"])
    answered = results(await call(apps["fast"], batch(
        {"group": "news", "data": "again", "idempotency_key": "k-1"},
        {"group": "sport", "data": "elsewhere", "idempotency_key": "k-1"},
    )()))
    assert answered[0] == first
    assert sync_redis.xlen(keys.stream("news")) == 1 and sync_redis.xlen(keys.stream("sport")) == 1
    # and the other way round: a retried batch message comes back as a single publish
    retried = json.loads((await call(apps["fast"], publish("sport", HTTP_IDEMPOTENCY_KEY="k-1")()))["body"])
    assert retried == answered[1]


async def test_a_message_redis_refuses_fails_alone(apps, sync_redis, caplog):
    sync_redis.set(keys.stream("broken"), "not a stream")  # its XADD fails: WRONGTYPE
    with caplog.at_level(logging.WARNING, logger="service.api.views"):
        answered = results(await call(apps["fast"], batch(
            {"group": "news", "data": 1}, {"group": "broken", "data": 2}, {"group": "news", "data": 3},
        )()))
    assert [r.get("error", {}).get("code") for r in answered] == [None, "unavailable", None]
    assert sync_redis.xlen(keys.stream("news")) == 2
    assert "batch: Redis failed 1 of 3 publishes (ResponseError: WRONGTYPE" in caplog.text
    assert answered[2]["offset"] > answered[0]["offset"]


async def test_a_batch_redis_does_not_answer_is_a_503_within_the_deadline(apps, settings, monkeypatch):
    await answered_503_by_a_silent_redis(
        apps, settings, monkeypatch, batch(*[{"group": "news", "data": n} for n in range(5)]))


async def test_messages_stored_before_a_not_replicated_503_come_back_on_the_retry(apps, sync_redis, settings):
    settings.GROUPCAST_REDIS_MIN_REPLICAS = 1  # the test Redis has no replica: stored, not acknowledged
    settings.GROUPCAST_REDIS_REPLICA_TIMEOUT_MS = 50
    messages = [{"group": "news", "data": n, "idempotency_key": f"m{n}"} for n in range(3)]
    assert (await call(apps["fast"], batch(*messages)()))["status"] == 503
    settings.GROUPCAST_REDIS_MIN_REPLICAS = 0
    answered = results(await call(apps["fast"], batch(*messages)()))
    assert [r["offset"] for r in answered] == [o.decode() for o, _ in sync_redis.xrange(keys.stream("news"))]
