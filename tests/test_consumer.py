"""The WebSocket protocol, driven through Channels' WebsocketCommunicator against a real
Redis (the consumer, the layer and the fan-out are the production ones)."""

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator

from service.groups import offset_after
from service.socket import drain
from service.storage import keys
from service.asgi import application
from service.storage.presence import group_subscribers
from service.storage.publishing import apublish_message
from service.tokens import token_issue
from tests.conftest import eventually


class Client:
    def __init__(self, communicator):
        self.communicator = communicator

    async def send(self, frame):
        await self.communicator.send_to(text_data=json.dumps(frame) if isinstance(frame, dict) else frame)

    async def frame(self, timeout=5):
        output = await self.communicator.receive_output(timeout)
        assert output["type"] == "websocket.send", output
        return json.loads(output["text"])

    async def closed(self, timeout=5):
        """Skip frames until the server closes; return (frames seen, close code)."""
        seen = []
        while True:
            output = await self.communicator.receive_output(timeout)
            if output["type"] == "websocket.close":
                return seen, output.get("code")
            seen.append(json.loads(output["text"]))

    async def subscribe(self, group, since=None):
        frame = {"type": "subscribe", "group": group}
        if since is not None:
            frame["since"] = since
        await self.send(frame)
        reply = await self.frame()
        assert reply["type"] == "subscribed" and reply["group"] == group, reply
        return reply

    async def nothing_more(self):
        assert await self.communicator.receive_nothing(0.2)


@pytest.fixture
async def connect(hub):
    opened = []

    async def open_client(groups=("news",), token=None, headers=None, expect_open=True):
        token = token if token is not None else token_issue(sub="user-1", groups=list(groups), ttl=60)
        communicator = WebsocketCommunicator(application, f"/ws?token={token}", headers=headers or [])
        connected, _ = await communicator.connect()
        assert connected == expect_open
        opened.append(communicator)
        return Client(communicator)

    yield open_client
    for communicator in opened:
        await communicator.disconnect()


async def test_missing_or_bad_token_closes_with_4001(connect):
    client = await connect(token="")
    frames, code = await client.closed()
    assert code == 4001 and frames[0]["code"] == "bad_token"
    client = await connect(token="nonsense")
    frames, code = await client.closed()
    assert code == 4001 and "invalid token" in frames[0]["message"]


async def test_browser_origins_must_be_allowed(connect):
    await connect(headers=[(b"origin", b"https://evil.example.com")], expect_open=False)
    client = await connect(headers=[(b"origin", b"https://app.example.com")])
    await client.subscribe("news")


async def test_subscribe_then_receive_published_messages_in_order(connect):
    client = await connect(groups=["news", "sports"])
    reply = await client.subscribe("news")
    assert reply["offset"] == "0-0"
    await client.subscribe("sports")
    offsets = [await apublish_message(group="news", data={"i": i}) for i in range(5)]
    await apublish_message(group="sports", data="goal")
    received = [await client.frame() for _ in range(6)]
    assert received[:5] == [
        {"type": "message", "group": "news", "offset": o, "data": {"i": i}} for i, o in enumerate(offsets)
    ]
    assert received[5]["group"] == "sports" and received[5]["data"] == "goal"


async def test_subscribed_carries_the_last_offset_and_since_replays_what_was_missed(connect):
    offsets = [await apublish_message(group="news", data=i) for i in range(5)]
    client = await connect()
    reply = await client.subscribe("news", since=offsets[1])
    assert reply["offset"] == offsets[4]
    assert [(await client.frame())["offset"] for _ in range(3)] == offsets[2:]
    live = await apublish_message(group="news", data="live")
    assert (await client.frame())["offset"] == live
    await client.nothing_more()


async def test_hand_off_from_history_to_live_has_no_gap_and_no_duplicate(connect):
    first = await apublish_message(group="busy", data=-1)
    client = await connect(groups=["busy"])

    async def publish_many():
        return [await apublish_message(group="busy", data=i) for i in range(300)]

    publisher = asyncio.ensure_future(publish_many())
    await asyncio.sleep(0.01)  # let publishing get going before the subscribe
    await client.subscribe("busy", since=first)
    offsets = await publisher
    received = [(await client.frame())["offset"] for _ in range(300)]
    assert received == offsets
    await client.nothing_more()


async def test_a_message_stored_before_joining_is_delivered_once_when_announced_late(connect, sync_redis):
    """The stream and the announcement reach a process on two connections: a joiner can
    read a message's offset from the stream before the process hears it announced, and a
    process that follows the group answers from what it has delivered. Either way the
    joiner gets exactly the messages after its `subscribed` offset, once each."""
    member = await connect(groups=["race"])
    before = (await member.subscribe("race"))["offset"]
    stored = sync_redis.xadd(keys.stream("race"), {"d": b'"early"'}).decode()  # announced below
    joiner = await connect(groups=["race"])
    joined_at = (await joiner.subscribe("race"))["offset"]
    assert joined_at in (before, stored)
    sync_redis.publish(keys.fanout_channel("race"), f'P{stored} "early"')
    after = await apublish_message(group="race", data="after")
    assert [(await member.frame())["offset"] for _ in range(2)] == [stored, after]
    expected = [offset for offset in (stored, after) if offset_after(offset, joined_at)]
    assert [(await joiner.frame())["offset"] for _ in expected] == expected
    await joiner.nothing_more()


async def test_since_older_than_retention_warns_then_replays_what_is_left(connect, settings):
    settings.GROUPCAST_HISTORY_SIZE = 5
    offsets = [await apublish_message(group="news", data=i) for i in range(300)]
    client = await connect()
    await client.subscribe("news", since=offsets[0])
    warning = await client.frame()
    assert warning["type"] == "error" and warning["code"] == "history_trimmed"
    replayed = []
    while not replayed or replayed[-1] != offsets[-1]:
        replayed.append((await client.frame())["offset"])
    assert replayed == offsets[-len(replayed):]


async def test_group_not_in_token_is_refused_with_4003(connect):
    client = await connect(groups=["news"])
    await client.send({"type": "subscribe", "group": "secret"})
    frames, code = await client.closed()
    assert code == 4003 and frames == [
        {"type": "error", "code": "forbidden", "message": "the token does not allow this group", "group": "secret"}
    ]


@pytest.mark.parametrize(
    "frame, code",
    [
        ("not json", "bad_json"),
        ('["a"]', "bad_frame"),
        ('{"type": "shout"}', "unknown_type"),
        ('{"type": "subscribe", "group": "bad group"}', "bad_group"),
        ('{"type": "subscribe", "group": "news", "since": "last week"}', "bad_offset"),
    ],
)
async def test_malformed_frames_get_an_error_frame_and_the_connection_stays(connect, frame, code):
    client = await connect()
    await client.send(frame)
    assert (await client.frame())["code"] == code
    await client.send({"type": "ping"})
    assert await client.frame() == {"type": "pong"}
    await client.subscribe("news")


async def test_binary_frames_are_refused_politely(connect):
    client = await connect()
    await client.communicator.send_to(bytes_data=b"\x00\x01")
    assert (await client.frame())["code"] == "bad_frame"
    await client.subscribe("news")


async def test_oversized_frame_closes_with_1009(connect, settings):
    settings.GROUPCAST_MAX_FRAME_BYTES = 1000
    client = await connect()
    await client.send(json.dumps({"type": "ping", "pad": "x" * 2000}))
    _, code = await client.closed()
    assert code == 1009


async def test_subscription_limits(connect, settings):
    settings.GROUPCAST_MAX_SUBSCRIPTIONS = 2
    client = await connect(groups=["a", "b", "c"])
    await client.subscribe("a")
    await client.send({"type": "subscribe", "group": "a"})
    assert (await client.frame())["code"] == "already_subscribed"
    await client.subscribe("b")
    await client.send({"type": "subscribe", "group": "c"})
    assert (await client.frame())["code"] == "too_many_subscriptions"


async def test_flooding_client_is_closed_with_4008(connect, settings):
    settings.GROUPCAST_CLIENT_RATE = 5
    client = await connect()
    for _ in range(30):
        await client.send({"type": "ping"})
    frames, code = await client.closed()
    assert code == 4008
    assert {"type": "pong"} in frames and frames[-1]["code"] == "rate_limited"


async def test_unsubscribe_stops_delivery(connect):
    client = await connect(groups=["news", "sports"])
    await client.subscribe("news")
    await client.subscribe("sports")
    await client.send({"type": "unsubscribe", "group": "news"})
    await client.send({"type": "ping"})
    assert await client.frame() == {"type": "pong"}
    await apublish_message(group="news", data="unheard")
    marker = await apublish_message(group="sports", data="marker")
    assert (await client.frame())["offset"] == marker
    await client.nothing_more()


async def test_presence_counts_subscribers_and_forgets_them_on_disconnect(connect):
    clients = [await connect() for _ in range(3)]
    for client in clients:
        await client.subscribe("news")
    assert await asyncio.to_thread(group_subscribers, group="news") == 3
    await clients[0].communicator.disconnect()
    await eventually(lambda: _counted("news", 2), what="presence count 2")


async def _counted(group, expected):
    return await asyncio.to_thread(group_subscribers, group=group) == expected


async def test_draining_process_refuses_new_connections_with_1012(connect, hub):
    hub.draining = True
    client = await connect()
    frames, code = await client.closed()
    assert code == 1012 and frames[0]["code"] == "restarting"


async def test_process_at_its_connection_limit_answers_1013(connect, settings):
    settings.GROUPCAST_MAX_CONNECTIONS = 1
    first = await connect()
    await first.subscribe("news")
    second = await connect()
    _, code = await second.closed()
    assert code == 1013


async def test_drain_closes_every_connection_with_1012(connect, hub, settings):
    settings.GROUPCAST_DRAIN_SECONDS = 0.2
    clients = [await connect() for _ in range(5)]
    for client in clients:
        await client.subscribe("news")
    await drain.drain(hub)
    for client in clients:
        _, code = await client.closed()
        assert code == 1012


async def test_the_close_runs_on_the_event_loop_without_channels_database_cleanup(connect, monkeypatch):
    # Channels' websocket_disconnect closes stale database connections in a thread (a hop
    # per closed connection: thousands at once after a drain); groupcast's consumer has
    # no database.
    import channels.generic.websocket

    cleanups = []

    async def cleanup():
        cleanups.append(1)

    monkeypatch.setattr(channels.generic.websocket, "aclose_old_connections", cleanup)
    client = await connect()
    await client.subscribe("news")
    await client.communicator.disconnect()
    await eventually(lambda: _counted("news", 0), what="presence count 0")
    assert cleanups == []
