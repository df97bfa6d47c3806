"""Who is connected and who may stay, on real processes (two socket processes, one
worker): presence members with join/leave per sub, the disconnect and unsubscribe APIs
across processes, client publish, token refresh and expiry."""

import asyncio
import json
import signal

import pytest
import websockets

from devstack import Stack, free_port
from tests.integration.clients import api
from tests.integration.conftest import STACK_ENV, running

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack():
    env = {**STACK_ENV, "GROUPCAST_JWT_LEEWAY": "0"}
    yield from running(Stack(socket_ports=[free_port(), free_port()], worker_ports=[free_port()], env=env))


def issue(stack, sub, groups, publish=(), info=None, ttl=600):
    body = {"sub": sub, "groups": list(groups), "publish": list(publish), "ttl": ttl}
    if info is not None:
        body["info"] = info
    status, reply = api(stack, "POST", "/api/v1/tokens", body)
    assert status == 200, reply
    return reply["token"]


class Client:
    """One WebSocket, every frame it receives kept in order."""

    def __init__(self, socket):
        self.socket = socket
        self.frames = []
        self.close_code = None
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, stack, token, process=0):
        return cls(await websockets.connect(f"{stack.ws_url(process)}?token={token}", open_timeout=10))

    async def _read(self):
        try:
            async for raw in self.socket:
                self.frames.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        self.close_code = self.socket.close_code

    async def send(self, frame):
        await self.socket.send(json.dumps(frame))

    async def wait_for(self, predicate, timeout=10, what="a frame"):
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for frame in self.frames:
                if predicate(frame):
                    return frame
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; got {self.frames[-5:]}")
            await asyncio.sleep(0.02)

    async def subscribe(self, group, **options):
        await self.send({"type": "subscribe", "group": group, **options})
        return await self.wait_for(lambda f: f["type"] == "subscribed" and f["group"] == group,
                                   what=f"subscribed to {group}")

    def of(self, kind, group=None):
        return [f for f in self.frames if f["type"] == kind and (group is None or f.get("group") == group)]

    async def closed(self, timeout=15):
        await asyncio.wait_for(asyncio.shield(self.reader), timeout)
        return self.close_code

    async def close(self):
        await self.socket.close()
        await asyncio.gather(self.reader, return_exceptions=True)


async def settled(client, seconds=0.5):
    """Let frames that might (wrongly) still come arrive: the absence of one is the test."""
    await asyncio.sleep(seconds)


async def test_members_join_with_their_first_connection_and_leave_with_their_last(stack):
    group = "room.presence"
    watcher = await Client.open(stack, issue(stack, "watcher", [group]), process=0)
    await watcher.subscribe(group, presence=True)
    tabs = []
    for n in range(3):  # one user, three tabs, on both socket processes
        tab = await Client.open(stack, issue(stack, "ann", [group], info={"name": "Ann"}), process=n % 2)
        reply = await tab.subscribe(group, presence=True)
        tabs.append(tab)
    assert {m["sub"] for m in reply["members"]} == {"watcher", "ann"} and reply["member_count"] == 2
    join = await watcher.wait_for(lambda f: f["type"] == "join", what="Ann's join")
    assert join == {"type": "join", "group": group, "sub": "ann", "info": {"name": "Ann"}}
    status, body = api(stack, "GET", f"/api/v1/groups/{group}/presence")
    assert status == 200 and body["member_count"] == 2
    assert {m["sub"]: m["connections"] for m in body["members"]} == {"watcher": 1, "ann": 3}
    await tabs[0].close()
    await tabs[1].close()
    await settled(watcher)
    assert watcher.of("leave") == [] and len(watcher.of("join")) == 1
    await tabs[2].close()
    leave = await watcher.wait_for(lambda f: f["type"] == "leave", what="Ann's leave")
    assert leave == {"type": "leave", "group": group, "sub": "ann"}
    # a subscriber that did not ask for presence is not listed and hears nothing of it
    quiet = await Client.open(stack, issue(stack, "quiet", [group]), process=1)
    assert "members" not in await quiet.subscribe(group)
    status, body = api(stack, "GET", f"/api/v1/groups/{group}/presence")
    assert [m["sub"] for m in body["members"]] == ["watcher"]
    for client in (watcher, quiet):
        await client.close()


async def test_a_killed_socket_process_members_leave_within_the_presence_ttl(stack):
    group = "room.crash"
    watcher = await Client.open(stack, issue(stack, "watcher", [group]), process=0)
    await watcher.subscribe(group, presence=True)
    doomed = await Client.open(stack, issue(stack, "bob", [group]), process=1)
    await doomed.subscribe(group, presence=True)
    await watcher.wait_for(lambda f: f["type"] == "join" and f["sub"] == "bob", what="Bob's join")
    stack.signal("socket1", signal.SIGKILL)
    stack.wait_exit("socket1", 10)
    leave = await watcher.wait_for(lambda f: f["type"] == "leave", timeout=15, what="Bob's leave")
    assert leave["sub"] == "bob"
    stack.start_socket(1)
    stack.wait_ready()
    await watcher.close()


async def test_a_drained_client_that_comes_back_elsewhere_never_left(stack):
    group = "room.drain"
    watcher = await Client.open(stack, issue(stack, "watcher", [group]), process=0)
    await watcher.subscribe(group, presence=True)
    token = issue(stack, "cat", [group])
    moving = await Client.open(stack, token, process=1)
    await moving.subscribe(group, presence=True)
    await watcher.wait_for(lambda f: f["type"] == "join" and f["sub"] == "cat", what="Cat's join")
    stack.signal("socket1", signal.SIGTERM)
    assert await moving.closed() == 1012
    back = await Client.open(stack, token, process=0)  # reconnects elsewhere, as told
    await back.subscribe(group, presence=True)
    stack.wait_exit("socket1", 20)
    await asyncio.sleep(5)  # past GROUPCAST_PRESENCE_TTL (3 s): the drained entry is swept now
    assert [f for f in watcher.frames if f["type"] in ("join", "leave")] == [
        {"type": "join", "group": group, "sub": "cat", "info": None}
    ]
    stack.start_socket(1)
    stack.wait_ready()
    for client in (watcher, back):
        await client.close()


async def test_the_disconnect_api_closes_every_connection_of_a_sub_on_every_process(stack):
    victims = [await Client.open(stack, issue(stack, "mallory", ["news"]), process=n % 2) for n in range(3)]
    bystander = await Client.open(stack, issue(stack, "alice", ["news"]), process=0)
    for client in [*victims, bystander]:
        await client.subscribe("news")
    status, body = api(stack, "POST", "/api/v1/disconnect", {"sub": "mallory"})
    assert status == 200 and body == {"disconnected": 3}
    assert [await victim.closed() for victim in victims] == [4009] * 3
    await bystander.send({"type": "ping"})
    await bystander.wait_for(lambda f: f["type"] == "pong", what="a pong")
    status, body = api(stack, "POST", "/api/v1/disconnect", {"sub": ""})
    assert status == 400
    await bystander.close()


async def test_the_unsubscribe_api_takes_a_sub_out_of_one_group(stack):
    clients = [await Client.open(stack, issue(stack, "dave", ["a", "b"]), process=n % 2) for n in range(2)]
    for client in clients:
        await client.subscribe("a")
        await client.subscribe("b")
    status, body = api(stack, "POST", "/api/v1/unsubscribe", {"sub": "dave", "group": "a"})
    assert status == 200 and body == {"unsubscribed": 2}
    for client in clients:
        frame = await client.wait_for(lambda f: f["type"] == "unsubscribed", what="unsubscribed")
        assert frame == {"type": "unsubscribed", "group": "a", "reason": "server"}
    status, published = api(stack, "POST", "/api/v1/publish", {"group": "b", "data": "still here"})
    for client in clients:
        message = await client.wait_for(lambda f: f["type"] == "message", what="a message of b")
        assert message["group"] == "b" and message["offset"] == published["offset"]
    status, _ = api(stack, "POST", "/api/v1/publish", {"group": "a", "data": "gone"})
    await settled(clients[0])
    assert all(f["group"] == "b" for c in clients for f in c.of("message"))
    for client in clients:
        await client.close()


async def test_clients_publish_where_their_token_lets_them(stack):
    reader = await Client.open(stack, issue(stack, "reader", ["room.1", "room.2", "lobby"]), process=1)
    for group in ("room.1", "lobby"):
        await reader.subscribe(group)
    writer = await Client.open(stack, issue(stack, "writer", [], publish=["room.*"]), process=0)
    await writer.send({"type": "publish", "group": "room.1", "data": {"text": "hi"}})
    published = await writer.wait_for(lambda f: f["type"] == "published", what="published")
    message = await reader.wait_for(lambda f: f["type"] == "message", what="the message")
    assert message == {"type": "message", "group": "room.1", "offset": published["offset"], "data": {"text": "hi"}}
    await writer.send({"type": "publish", "group": "lobby", "data": "nope"})
    error = await writer.wait_for(lambda f: f["type"] == "error", what="forbidden")
    assert error["code"] == "forbidden" and error["group"] == "lobby"
    await writer.send({"type": "ping"})  # the connection stays open
    await writer.wait_for(lambda f: f["type"] == "pong", what="a pong")
    await settled(reader)
    assert [m["group"] for m in reader.of("message")] == ["room.1"]
    for client in (reader, writer):
        await client.close()


async def test_a_refresh_keeps_the_connection_and_drops_groups_the_new_token_lacks(stack):
    client = await Client.open(stack, issue(stack, "erin", ["a", "b"], ttl=600), process=0)
    await client.subscribe("a")
    await client.subscribe("b")
    await client.send({"type": "refresh", "token": issue(stack, "erin", ["a"], ttl=900)})
    refreshed = await client.wait_for(lambda f: f["type"] == "refreshed", what="refreshed")
    assert isinstance(refreshed["exp"], int)
    assert client.of("unsubscribed") == [{"type": "unsubscribed", "group": "b", "reason": "token"}]
    await client.send({"type": "refresh", "token": issue(stack, "someone-else", ["a"])})
    error = await client.wait_for(lambda f: f["type"] == "error", what="refused refresh")
    assert error["code"] == "forbidden"
    await client.close()


async def test_a_token_that_runs_out_warns_then_closes_with_4001(stack):
    client = await Client.open(stack, issue(stack, "fay", ["a"], ttl=3), process=1)
    await client.subscribe("a")
    expiring = await client.wait_for(lambda f: f["type"] == "expiring", what="expiring")
    assert 0 <= expiring["in"] <= 3
    assert await client.closed(timeout=10) == 4001
