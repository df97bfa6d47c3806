"""Server-Sent Events on real socket processes: a raw HTTP client through the exact
reconnect-with-Last-Event-ID path, errors before the stream, CORS, a drain during a
stream, a slow stream, and a real browser's EventSource."""

import asyncio
import json
import signal
import socket
import urllib.error
import urllib.request

import pytest
from playwright.async_api import async_playwright

from devstack import Stack, free_port
from tests.integration.clients import metric, publish, token
from tests.integration.conftest import STACK_ENV, running
from tests.integration.test_demo_page import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack():
    env = {**STACK_ENV, "GROUPCAST_SSE_KEEPALIVE_SECONDS": "1", "GROUPCAST_HANDSHAKE_TIMEOUT": "2",
           "GROUPCAST_SEND_QUEUE_BYTES": "65536"}
    yield from running(Stack(socket_ports=[free_port(), free_port()], worker_ports=[free_port()], env=env))


def sse_url(stack, token, groups, process=0, since=None):
    query = "&".join([f"token={token}", *(f"group={g}" for g in groups)] + ([f"since={since}"] if since else []))
    return f"http://127.0.0.1:{stack.socket_ports[process]}/sse?{query}"


class Stream:
    """A raw SSE client: one HTTP request, events parsed as they arrive."""

    def __init__(self, url, headers=None):
        self.url, self.headers = url, headers or {}
        self.events, self.comments = [], 0
        self.status = None
        self.ended = asyncio.Event()
        self.task = asyncio.ensure_future(self._read())

    async def _read(self):
        path = self.url.split("/", 3)[3]
        host, port = self.url.split("/")[2].split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        lines = [f"GET /{path} HTTP/1.1", f"Host: {host}", "Accept: text/event-stream"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.writer = writer
        status = await reader.readline()
        self.status = int(status.split()[1])
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        buffer, event = b"", {}
        try:
            while True:
                size = await reader.readline()  # chunked transfer encoding
                if not size or int(size.strip() or b"0", 16) == 0:
                    break
                chunk = await reader.readexactly(int(size.strip(), 16) + 2)
                buffer += chunk[:-2]
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    line = line.decode()
                    if line == "":
                        if event:
                            self.events.append(event)
                        event = {}
                    elif line.startswith(":"):
                        self.comments += 1
                    else:
                        name, _, value = line.partition(": ")
                        event[name] = value
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.ended.set()

    def messages(self):
        return [json.loads(e["data"]) for e in self.events if e.get("event") == "message"]

    async def until(self, predicate, timeout=10, what="an event"):
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; got {self.events[-3:]}")
            await asyncio.sleep(0.02)

    def close(self):
        self.writer.close()
        self.task.cancel()


async def test_a_reconnect_with_last_event_id_resumes_every_group(stack):
    tok = token(stack, ["news", "sports"])
    stream = Stream(sse_url(stack, tok, ["news", "sports"]))
    await stream.until(lambda: any(e.get("event") == "subscribed" for e in stream.events), what="subscribed")
    sent = [publish(stack, group, n) for n, group in enumerate(["news", "sports", "news"])]
    await stream.until(lambda: len(stream.messages()) == 3, what="three messages")
    last_id = stream.events[-1]["id"]
    stream.close()
    missed = [publish(stack, group, n) for n, group in enumerate(["sports", "news"], 3)]
    resumed = Stream(sse_url(stack, tok, ["news", "sports"], process=1), {"Last-Event-ID": last_id})
    await resumed.until(lambda: len(resumed.messages()) == 2, what="the missed messages")
    # each group in order, with no gap and no duplicate (groups are streams of their own)
    assert sorted(m["offset"] for m in resumed.messages()) == sorted(missed)
    assert [m["offset"] for m in stream.messages()] == sent
    # the same through ?since=
    again = Stream(sse_url(stack, tok, ["news", "sports"], since=last_id))
    await again.until(lambda: len(again.messages()) == 2, what="the missed messages again")
    assert sorted(m["offset"] for m in again.messages()) == sorted(missed)
    await again.until(lambda: again.comments >= 2, timeout=5, what="keepalive comments")
    for s in (resumed, again):
        s.close()


async def test_a_stream_outlives_the_handshake_timeout(stack):
    tok = token(stack, ["long"])
    stream = Stream(sse_url(stack, tok, ["long"]))
    await stream.until(lambda: stream.events, what="subscribed")
    await asyncio.sleep(3)  # past GROUPCAST_HANDSHAKE_TIMEOUT (2 s): the stream is what is tested
    offset = publish(stack, "long", "still open")
    await stream.until(lambda: [m["offset"] for m in stream.messages()] == [offset], what="the message")
    stream.close()


def get(url, headers=None, method="GET"):
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.headers, b""
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


async def test_errors_before_the_stream_are_json_and_cors_is_answered(stack):
    tok = token(stack, ["news"])
    origin = f"http://127.0.0.1:{stack.http_port}"  # allowed in the local stack
    cases = [
        (sse_url(stack, "x.y.z", ["news"]), {}, 401, "bad_token"),
        (sse_url(stack, tok, ["sports"]), {}, 403, "forbidden"),
        (sse_url(stack, tok, ["no%20spaces"]), {}, 400, "bad_group"),
        (sse_url(stack, tok, ["news"], since="bm90IGEgY3Vyc29y"), {}, 400, "bad_cursor"),
        (sse_url(stack, tok, ["news"]), {"Origin": "https://evil.example"}, 403, "forbidden"),
    ]
    for url, headers, status, code in cases:
        got, _, body = await asyncio.to_thread(get, url, headers)
        assert (got, json.loads(body)["error"]["code"]) == (status, code), url
    status, headers, _ = await asyncio.to_thread(get, sse_url(stack, tok, ["news"]), {"Origin": origin}, "OPTIONS")
    assert status == 204 and headers.get("access-control-allow-origin") == origin
    allowed = Stream(sse_url(stack, tok, ["news"]), {"Origin": origin})
    await allowed.until(lambda: allowed.events, what="subscribed")
    assert allowed.status == 200
    allowed.close()


async def test_a_drain_ends_streams_and_clients_resume_elsewhere(stack):
    tok = token(stack, ["drained"])
    stream = Stream(sse_url(stack, tok, ["drained"], process=1))
    await stream.until(lambda: stream.events, what="subscribed")
    first = publish(stack, "drained", 1)
    await stream.until(lambda: stream.messages(), what="the first message")
    stack.signal("socket1", signal.SIGTERM)
    await asyncio.wait_for(stream.ended.wait(), 15)
    close = [e for e in stream.events if e.get("event") == "close"]
    assert json.loads(close[0]["data"])["code"] == 1012
    missed = publish(stack, "drained", 2)
    resumed = Stream(sse_url(stack, tok, ["drained"], process=0), {"Last-Event-ID": stream.events[-2]["id"]})
    await resumed.until(lambda: resumed.messages(), what="the missed message")
    assert [m["offset"] for m in stream.messages()] == [first]
    assert [m["offset"] for m in resumed.messages()] == [missed]
    resumed.close()
    stack.wait_exit("socket1", 20)
    stack.start_socket(1)
    stack.wait_ready()


async def test_a_stream_that_is_not_read_is_ended_and_counted(stack):
    tok = token(stack, ["firehose"])
    scrape = f"http://127.0.0.1:{stack.socket_ports[0]}/metrics"
    before = metric((await asyncio.to_thread(urllib.request.urlopen, scrape)).read().decode(),
                    "groupcast_disconnects_total", 'code="4008"')
    connection = socket.socket()
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    connection.connect(("127.0.0.1", stack.socket_ports[0]))
    path = sse_url(stack, tok, ["firehose"]).split("/", 3)[3]
    connection.sendall(f"GET /{path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())  # and never reads
    for n in range(300):
        publish(stack, "firehose", "x" * 8000)

    def counted():
        text = urllib.request.urlopen(scrape).read().decode()
        return metric(text, "groupcast_disconnects_total", 'code="4008"') > before

    deadline = asyncio.get_running_loop().time() + 15
    while not await asyncio.to_thread(counted):
        assert asyncio.get_running_loop().time() < deadline, "the slow stream was not ended"
        await asyncio.sleep(0.2)
    connection.close()


async def test_a_browser_eventsource_receives_and_resumes(stack):
    tok = token(stack, ["browser"])
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(stack.http_url + "/")  # an allowed origin, another port than /sse
        await page.evaluate("""url => {
            window.got = [];
            window.source = new EventSource(url);
            window.source.addEventListener("subscribed", () => { window.subscribed = true; });
            window.source.addEventListener("message", e => window.got.push(JSON.parse(e.data).offset));
        }""", sse_url(stack, tok, ["browser"]))
        await page.wait_for_function("window.subscribed === true", timeout=10000)
        first = publish(stack, "browser", "one")
        await page.wait_for_function(f"window.got.includes({json.dumps(first)})", timeout=10000)
        # the server ends the stream (a drain); the browser reconnects by itself with
        # Last-Event-ID and gets what it missed
        stack.signal("socket0", signal.SIGTERM)
        stack.wait_exit("socket0", 20)
        missed = publish(stack, "browser", "two")
        stack.start_socket(0)
        stack.wait_ready()
        await page.wait_for_function(f"window.got.includes({json.dumps(missed)})", timeout=20000)
        assert await page.evaluate("window.got") == [first, missed]
        await browser.close()


async def test_the_js_client_falls_back_to_sse_and_resumes_across_the_switch(stack):
    tok = token(stack, ["switch"])
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(stack.http_url + "/")  # loads /static/groupcast.js
        await page.evaluate("""([url, token]) => {
            window.got = [];
            window.client = new GroupcastClient(url, { token });
            window.client.subscribe("switch", (data, message) => window.got.push(message.offset));
        }""", [stack.ws_url(0), tok])
        await page.wait_for_function("window.client.offset('switch') !== null", timeout=10000)
        first = publish(stack, "switch", "over the WebSocket")
        await page.wait_for_function(f"window.got.includes({json.dumps(first)})", timeout=10000)
        # from now on no WebSocket opens (a proxy that blocks them); the open one drops
        await page.evaluate("""() => {
            window.WebSocket = class {
                static OPEN = 1;
                constructor() { this.readyState = 3; setTimeout(() => this.onclose && this.onclose({ code: 1006, reason: "" }), 10); }
                send() {}
                close() {}
            };
            window.client.socket.close();
        }""")
        missed = publish(stack, "switch", "while switching")
        await page.wait_for_function("window.client.transport === 'sse'", timeout=20000)
        await page.wait_for_function(f"window.got.includes({json.dumps(missed)})", timeout=20000)
        after = publish(stack, "switch", "over SSE")
        await page.wait_for_function(f"window.got.includes({json.dumps(after)})", timeout=10000)
        assert await page.evaluate("window.got") == [first, missed, after]
        await page.evaluate("window.client.close()")
        await browser.close()
