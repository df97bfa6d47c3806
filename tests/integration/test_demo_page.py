"""The demo page and groupcast.js in a real headless Chromium (Debian's), against the
real topology: presence between two pages, publishing over the WebSocket, token
callbacks that give JSON or fail, automatic refresh, and the server's 4009."""

import asyncio
import base64
import json
import signal

import pytest
from playwright.async_api import async_playwright, expect

from devstack import Stack
from tests.integration.clients import api, publish
from tests.integration.conftest import running

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
# Flags for a closed network: no background fetches, no first-run, no sandbox as root.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def demo_stack():
    # No clock-skew leeway: a token that is not refreshed is closed right at its exp.
    topology = Stack(env={"GROUPCAST_DRAIN_SECONDS": "0.5", "GROUPCAST_JWT_LEEWAY": "0"})
    yield from running(topology)


@pytest.fixture
async def new_page(demo_stack):
    """Opens the demo page in a new tab of one browser; each tab's uncaught errors fail the test."""
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        errors = []

        async def open_page():
            page = await browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(demo_stack.http_url + "/")
            return page

        yield open_page
        await browser.close()
        assert errors == []


@pytest.fixture
async def page(new_page):
    return await new_page()


class Traffic:
    """What a page sent and received: its WebSockets, their frames, its token fetches."""

    def __init__(self, page, token_path="/demo/token"):
        self.sockets = []
        self.sent = []
        self.received = []
        self.token_fetches = 0
        self.console_errors = []
        page.on("websocket", self._socket)
        page.on("request", lambda request: self._request(request, token_path))
        page.on("console", self._console)

    def _console(self, message):
        if message.type == "error":  # with the resource's address, to tell which failed
            self.console_errors.append(f"{message.text} [{message.location.get('url', '')}]")

    def _socket(self, socket):
        self.sockets.append(socket)
        socket.on("framesent", lambda payload: self.sent.append(json.loads(payload)))
        socket.on("framereceived", lambda payload: self.received.append(json.loads(payload)))

    def _request(self, request, token_path):
        if request.url.endswith(token_path):
            self.token_fetches += 1

    def of(self, frames, kind):
        return [frame for frame in frames if frame["type"] == kind]


async def join(page, stack, name, group):
    """Subscribe the demo page to `group` as `name` (presence on) and wait until it is."""
    await page.fill("#api-key", stack.api_key)
    await page.fill("#name", name)
    await page.fill("#group", group)
    await page.click("#subscribe")
    await expect(page.locator("#status")).to_contain_text(f"subscribed to {group}", timeout=10000)


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def issue(stack, sub, groups, ttl=600):
    status, reply = api(stack, "POST", "/api/v1/tokens", {"sub": sub, "groups": list(groups), "ttl": ttl})
    assert status == 200, reply
    return reply["token"]


async def test_subscribe_publish_and_watch_messages_arrive(page, demo_stack):
    await page.fill("#api-key", demo_stack.api_key)
    await page.fill("#group", "demo")
    await page.click("#subscribe")
    await expect(page.locator("#status")).to_contain_text("subscribed to demo", timeout=10000)

    await page.fill("#data", '{"text": "from the page"}')
    await page.click("#publish")
    await expect(page.locator("#published")).to_contain_text("published at", timeout=10000)
    first = page.locator("li.message").first
    await expect(first).to_contain_text('"from the page"', timeout=10000)

    offset = publish(demo_stack, "demo", {"text": "from the API"})
    await expect(page.locator(f'li.message[data-offset="{offset}"]')).to_contain_text("from the API", timeout=10000)


async def test_the_client_resumes_by_offset_after_a_server_restart(page, demo_stack):
    traffic = Traffic(page)
    await page.fill("#api-key", demo_stack.api_key)
    await page.fill("#group", "restart")
    await page.click("#subscribe")
    await expect(page.locator("#status")).to_contain_text("subscribed to restart", timeout=10000)
    before = publish(demo_stack, "restart", "before")
    await expect(page.locator(f'li.message[data-offset="{before}"]')).to_be_visible(timeout=10000)

    demo_stack.signal("socket0", signal.SIGTERM)  # drain: the page gets 1012
    demo_stack.wait_exit("socket0", 15)
    missed = publish(demo_stack, "restart", "while away")
    demo_stack.start_socket(0)
    demo_stack.wait_ready()

    await expect(page.locator(f'li.message[data-offset="{missed}"]')).to_contain_text("while away", timeout=20000)
    after = publish(demo_stack, "restart", "after")
    await expect(page.locator(f'li.message[data-offset="{after}"]')).to_be_visible(timeout=10000)
    assert await page.locator("li.message").count() == 3
    # resumed after the last offset it had (maybe by way of Server-Sent Events while the
    # server was down, then back on a WebSocket), still present
    await expect(page.locator("#transport")).to_have_text("WebSocket", timeout=10000)
    deadline = asyncio.get_running_loop().time() + 10
    while "since" not in traffic.of(traffic.sent, "subscribe")[-1]:
        assert asyncio.get_running_loop().time() < deadline, "never resubscribed over a WebSocket"
        await asyncio.sleep(0.05)
    last = traffic.of(traffic.sent, "subscribe")[-1]
    assert last["since"] in (before, missed, after)
    assert {k: v for k, v in last.items() if k != "since"} == {"type": "subscribe", "group": "restart", "presence": True}
    await expect(page.locator("#members li.member")).to_have_count(1)


async def test_two_pages_see_who_is_present_and_each_other_join_and_leave(new_page, demo_stack):
    group = "room.presence"
    ann = await new_page()
    await join(ann, demo_stack, "Ann", group)
    await expect(ann.locator("#members li.member")).to_have_text(["Ann"])
    await expect(ann.locator("#member-count")).to_have_text("1 member")

    bob = await new_page()
    await join(bob, demo_stack, "Bob", group)
    # names from the tokens' info (the subs are demo-Ann and demo-Bob)
    await expect(bob.locator("#members li.member")).to_have_count(2)
    await expect(bob.locator('#members li.member[data-sub="demo-Ann"]')).to_have_text("Ann")
    await expect(bob.locator('#members li.member[data-sub="demo-Bob"]')).to_have_text("Bob")
    await expect(ann.locator('li.event.join[data-sub="demo-Bob"]')).to_have_text("Bob joined", timeout=10000)
    await expect(ann.locator('#members li.member[data-sub="demo-Bob"]')).to_have_text("Bob")
    await expect(ann.locator("#member-count")).to_have_text("2 members")
    status, body = api(demo_stack, "GET", f"/api/v1/groups/{group}/presence")
    assert status == 200 and {m["sub"]: m["info"] for m in body["members"]} == {
        "demo-Ann": {"name": "Ann"}, "demo-Bob": {"name": "Bob"}}

    await bob.close()
    await expect(ann.locator('li.event.leave[data-sub="demo-Bob"]')).to_have_text("Bob left", timeout=10000)
    await expect(ann.locator("#members li.member")).to_have_text(["Ann"])
    await expect(ann.locator("#member-count")).to_have_text("1 member")
    assert await ann.locator("li.event").count() == 2


async def test_the_page_publishes_over_the_websocket_when_its_token_allows_it(new_page, demo_stack):
    group = "room.publish"
    reader = await new_page()
    await join(reader, demo_stack, "Reader", group)
    writer = await new_page()
    traffic = Traffic(writer)
    http_publishes = []
    writer.on("request", lambda r: r.url.endswith("/api/v1/publish") and http_publishes.append(r.url))
    await join(writer, demo_stack, "Writer", group)

    await writer.fill("#data", '{"text": "over the socket"}')
    await writer.click("#publish")
    await expect(writer.locator("#published")).to_contain_text("over the WebSocket", timeout=10000)
    offset = (await writer.locator("#published").text_content()).split()[2]
    for page in (reader, writer):
        await expect(page.locator(f'li.message[data-offset="{offset}"]')).to_contain_text("over the socket", timeout=10000)
    assert traffic.of(traffic.sent, "publish") == [{"type": "publish", "group": group, "data": {"text": "over the socket"}}]
    assert traffic.of(traffic.received, "published") == [{"type": "published", "group": group, "offset": offset}]
    assert http_publishes == []


async def test_publish_rejects_with_the_servers_error_for_that_group(page, demo_stack):
    # A token that may read room.ro but publish nowhere; a publish is refused with
    # "forbidden", the connection stays and the subscription goes on.
    token = issue(demo_stack, "reader", ["room.ro"])
    result = await page.evaluate("""async ([url, token]) => {
        const client = new GroupcastClient(url, { token });
        const received = [];
        client.subscribe("room.ro", (data) => received.push(data));
        const outcome = await client.publish("room.ro", "nope").then((o) => "published " + o, (e) => e.code + " " + e.group);
        const tooLarge = await client.publish("room.ro", "x".repeat(20000)).catch((e) => e.code);
        const badGroup = await client.publish("no spaces", 1).catch((e) => e.code);
        window.probe = { client, received };
        return [outcome, tooLarge, badGroup];
    }""", [demo_stack.ws_url(0), token])
    assert result == ["forbidden room.ro", "too_large", "bad_group"]
    offset = publish(demo_stack, "room.ro", "still subscribed")
    await page.wait_for_function("() => window.probe.received.includes('still subscribed')", timeout=10000)
    assert await page.evaluate("() => window.probe.client.offset('room.ro')") == offset


async def test_a_token_callback_may_give_json_text_an_object_or_a_response(page, demo_stack):
    """The callbacks apps write: the JSON their backend relays from POST /tokens, as text,
    parsed, or the fetch Response itself. Each connects once, with one token fetch (this
    used to reconnect at once, forever: 147 fetches and 148 connections in 3 s)."""
    fetches = []

    async def backend(route):
        fetches.append(route.request.url)
        body = {"token": issue(demo_stack, "app-user", ["room.json"]), "expires_in": 600}
        await route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    await page.route("**/app/token", backend)
    traffic = Traffic(page)
    await page.evaluate("""(url) => {
        window.seen = { text: [], object: [], response: [] };
        window.subscribed = 0;
        const callbacks = {
            text: async () => (await fetch("/app/token")).text(),
            object: async () => (await fetch("/app/token")).json(),
            response: () => fetch("/app/token"),
        };
        for (const [kind, token] of Object.entries(callbacks)) {
            const client = new GroupcastClient(url, {
                token,
                onStatus: (state) => { if (state === "subscribed") window.subscribed += 1; },
            });
            client.subscribe("room.json", (data) => window.seen[kind].push(data));
        }
    }""", demo_stack.ws_url(0))
    await page.wait_for_function("() => window.subscribed === 3", timeout=10000)
    publish(demo_stack, "room.json", "hello")
    await page.wait_for_function(
        "() => Object.values(window.seen).every((got) => got.length === 1 && got[0] === 'hello')", timeout=10000)
    assert len(fetches) == 3 and len(traffic.sockets) == 3
    assert traffic.console_errors == []


# How long the backoff tests watch a failing client. With the default delays (250 ms
# doubling, each wait between half and all of it) 3 s hold at most 5 attempts; reconnecting
# at once, as the client used to, makes them hundreds.
WATCH_MS = 3000


async def test_a_failing_token_endpoint_is_retried_with_backoff_then_recovers(page, demo_stack):
    traffic = Traffic(page)
    refusals = []

    async def down(route):
        refusals.append(route.request.url)
        await route.fulfill(status=503, content_type="application/json",
                            body='{"error": {"code": "unavailable", "message": "token service down"}}')

    await page.route("**/demo/token", down)
    await page.fill("#api-key", demo_stack.api_key)
    await page.fill("#group", "room.backoff")
    await page.click("#subscribe")
    await expect(page.locator("#status")).to_contain_text("reconnecting in", timeout=10000)
    # Counting attempts needs a window of time: nothing else says "it did not retry".
    await page.wait_for_timeout(WATCH_MS)
    assert 2 <= len(refusals) <= 6, refusals
    assert traffic.sockets == []

    await page.unroute("**/demo/token", down)  # the endpoint is back: the next attempt connects
    await expect(page.locator("#status")).to_contain_text("subscribed to room.backoff", timeout=20000)
    assert len(traffic.sockets) == 1


async def test_a_refused_token_4001_is_retried_with_backoff_and_errors_show_by_default(page, demo_stack):
    """A token the server refuses (here: signed with another secret): each attempt fetches
    a new one, connects, gets 4001, and waits longer; without onError the console says why."""
    fetches = []
    forged = issue(demo_stack, "someone", ["room.4001"])
    forged = forged[: forged.rindex(".") + 1] + "A" * 43

    async def backend(route):
        fetches.append(route.request.url)
        await route.fulfill(status=200, content_type="application/json", body=json.dumps({"token": forged}))

    await page.route("**/app/token", backend)
    traffic = Traffic(page)
    async with page.expect_websocket(timeout=10000):
        await page.evaluate("""(url) => {
            window.probe = new GroupcastClient(url, { token: async () => (await fetch("/app/token")).json() });
            window.probe.subscribe("room.4001", () => {});
        }""", demo_stack.ws_url(0))
    await page.wait_for_timeout(WATCH_MS)  # the window the attempts are counted in
    await page.evaluate("() => window.probe.close()")
    sockets = len(traffic.sockets)
    assert 2 <= sockets <= 6 and sockets <= len(fetches) <= sockets + 1, (sockets, len(fetches))
    assert any("bad_token" in line for line in traffic.console_errors), traffic.console_errors


async def test_the_token_is_refreshed_on_the_connection_past_its_exp(page, demo_stack):
    """Tokens of 3 s: the server says `expiring` at once, the page fetches a new token and
    sends `refresh`; one connection outlives the first token (and several more)."""
    exps = []

    async def short_lived(route):
        body = json.loads(route.request.post_data)
        response = await route.fetch(post_data=json.dumps({**body, "ttl": 3}))
        exps.append(claims((await response.json())["token"])["exp"])
        await route.fulfill(response=response)

    await page.route("**/demo/token", short_lived)
    traffic = Traffic(page)
    await join(page, demo_stack, "Rae", "room.refresh")
    await expect(page.locator("#token-status")).to_contain_text("token refreshed", timeout=10000)
    # Past the first token's exp (with no leeway the server would have closed it with 4001).
    await page.wait_for_function("exp => Date.now() / 1000 > exp", arg=exps[0] + 2, timeout=15000)
    offset = publish(demo_stack, "room.refresh", "still here")
    await expect(page.locator(f'li.message[data-offset="{offset}"]')).to_contain_text("still here", timeout=10000)
    assert len(traffic.sockets) == 1 and not traffic.sockets[0].is_closed()
    refreshes = traffic.of(traffic.sent, "refresh")
    # one token to connect, one per refresh (and maybe one on its way)
    assert len(refreshes) >= 2 and len(refreshes) + 1 <= len(exps) <= len(refreshes) + 2
    assert len(traffic.of(traffic.received, "refreshed")) >= len(refreshes) - 1  # the last may be on its way
    assert "Rae" in await page.locator("#status").text_content()


async def test_a_page_disconnected_by_the_server_does_not_reconnect(page, demo_stack):
    traffic = Traffic(page)
    await join(page, demo_stack, "Mallory", "room.kick")
    await expect(page.locator("#members li.member")).to_have_text(["Mallory"])
    status, body = api(demo_stack, "POST", "/api/v1/disconnect", {"sub": "demo-Mallory"})
    assert status == 200 and body == {"disconnected": 1}
    await expect(page.locator("#status")).to_contain_text("disconnected by the server", timeout=10000)
    await expect(page.locator("#status")).to_contain_text("not reconnecting")
    await expect(page.locator("#members li.member")).to_have_count(0)
    # A reconnect would come within 250 ms; watch well past that.
    await page.wait_for_timeout(WATCH_MS)
    assert len(traffic.sockets) == 1 and traffic.token_fetches == 1


async def test_a_page_taken_out_of_its_group_drops_it(page, demo_stack):
    traffic = Traffic(page)
    await join(page, demo_stack, "Ned", "room.out")
    status, body = api(demo_stack, "POST", "/api/v1/unsubscribe", {"sub": "demo-Ned", "group": "room.out"})
    assert status == 200 and body == {"unsubscribed": 1}
    await expect(page.locator("#status")).to_have_text("unsubscribed from room.out (server)", timeout=10000)
    await expect(page.locator("#members li.member")).to_have_count(0)
    # The connection stays; a drain (1012) makes it reconnect, and it does not ask for the group again.
    async with page.expect_websocket(timeout=20000):
        demo_stack.signal("socket0", signal.SIGTERM)
        demo_stack.wait_exit("socket0", 15)
        demo_stack.start_socket(0)
        demo_stack.wait_ready()
    await expect(page.locator("#status")).to_have_text("open", timeout=10000)
    assert not traffic.sockets[-1].is_closed()  # (the attempts while it was down failed)
    assert traffic.of(traffic.sent, "subscribe") == [{"type": "subscribe", "group": "room.out", "presence": True}]


async def test_the_client_matches_answers_to_requests_and_tells_presence_changes_after_a_reconnect(page):
    """What the real server does not do on demand, played by a scripted socket in the same
    browser: answers matched to publishes in order, a publish cut by a disconnect, and the
    members who came and went while the client was away."""
    log = await page.evaluate("""async () => {
        const sockets = [];
        let opened = null;
        class ScriptedSocket {
            constructor(url) {
                this.url = url; this.sent = []; this.readyState = 0;
                sockets.push(this);
                if (opened) opened(this);
            }
            send(text) { this.sent.push(JSON.parse(text)); }
            close(code) { this.end(code || 1000); }
            open() { this.readyState = 1; this.onopen(); }
            say(frame) { this.onmessage({ data: JSON.stringify(frame) }); }
            end(code, reason = "") { this.readyState = 3; this.onclose({ code, reason }); }
        }
        ScriptedSocket.OPEN = 1;
        const real = window.WebSocket;
        window.WebSocket = ScriptedSocket;
        const next = () => new Promise((resolve) => { opened = resolve; });
        const tick = () => new Promise((resolve) => setTimeout(resolve));
        const log = [];
        try {
            const client = new GroupcastClient("ws://scripted/ws", {
                token: async () => "aaa.bbb.ccc",
                onError: (error) => log.push("error " + error.code),
                onDisconnected: (info) => log.push("disconnected " + info.code),
            });
            client.onJoin("g", (m) => log.push("join " + m.sub));
            client.onLeave("g", (m) => log.push("leave " + m.sub));
            client.subscribe("g", () => {}, { presence: true });
            const early = client.publish("g", 1);  // before the connection: waits for the pong
            await tick();
            const first = sockets[0];
            first.open();
            log.push("sent " + first.sent.map((f) => f.type).join(","));
            first.say({ type: "pong" });
            log.push("then " + first.sent.slice(2).map((f) => f.type + ":" + f.data).join(","));
            first.say({ type: "subscribed", group: "g", offset: "1-0", members: [{ sub: "me", info: null }, { sub: "a", info: null }], member_count: 2 });
            first.say({ type: "join", group: "g", sub: "b", info: { name: "B" } });
            const second = client.publish("g", 2);
            first.say({ type: "error", group: "g", code: "forbidden", message: "no" });
            first.say({ type: "published", group: "g", offset: "5-0" });
            log.push("early " + await early.catch((e) => e.code));
            log.push("second " + await second.then((o) => o, (e) => e.code));
            log.push("members " + client.presence("g").map((m) => m.sub).join(",") + " " + client.memberCount("g"));
            const cut = client.publish("g", 3);
            const reconnected = next();
            first.end(1006);
            log.push("cut " + await cut.catch((e) => e.code));
            const again = await reconnected;  // after a backoff
            again.open();
            log.push("resubscribe " + JSON.stringify(again.sent[1]));
            again.say({ type: "subscribed", group: "g", offset: "6-0", members: [{ sub: "me", info: null }, { sub: "c", info: null }], member_count: 2 });
            log.push("members " + client.presence("g").map((m) => m.sub).join(","));
            again.end(4009, "disconnected by the server");
            log.push("closed " + await client.publish("g", 4).catch((e) => e.code));
            log.push("sockets " + sockets.length);
        } finally {
            window.WebSocket = real;
        }
        return log;
    }""")
    assert log == [
        "sent ping,subscribe",
        "then publish:1",
        "join b",
        "early forbidden",
        "second 5-0",
        "members me,a,b 3",
        "cut disconnected",
        'resubscribe {"type":"subscribe","group":"g","since":"1-0","presence":true}',
        "join c",
        "leave a",
        "leave b",
        "members me,c",
        "disconnected 4009",
        "closed disconnected",
        "sockets 2",
    ]
