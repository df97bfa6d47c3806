"""Connection events (service/socket/events.py) go to the workers' channel, batched, and
only when a webhook takes them."""

import asyncio

from service.socket.events import CHANNEL, EventEmitter


async def test_with_a_webhook_events_reach_the_workers_channel_in_one_batch(layer, settings):
    settings.GROUPCAST_WEBHOOK_URL = "https://hooks.example.com/groupcast"
    emitter = EventEmitter()
    emitter.emit("connect", sub="user-1")
    emitter.emit("subscribe", sub="user-1", group="news")
    message = await asyncio.wait_for(layer.receive(CHANNEL), 5)
    assert message["type"] == "groupcast.events"
    assert [(event["event"], event["sub"], event.get("group")) for event in message["events"]] == [
        ("connect", "user-1", None), ("subscribe", "user-1", "news"),
    ]


async def test_without_a_webhook_nothing_is_queued_or_sent(layer, settings):
    settings.GROUPCAST_WEBHOOK_URL = None
    emitter = EventEmitter()
    emitter.emit("connect", sub="user-1")
    assert emitter.pending == [] and emitter.task is None
