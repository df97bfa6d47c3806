"""A WebSocket test client written from the public contract, plus HTTP helpers."""

import asyncio
import json
import time
import urllib.error
import urllib.request

import websockets


def api(stack, method, path, body=None, key=None):
    """(status, JSON body) of one API call."""
    request = urllib.request.Request(
        stack.http_url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {key or stack.api_key}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def publish(stack, group, data):
    status, body = api(stack, "POST", "/api/v1/publish", {"group": group, "data": data})
    assert status == 200, body
    return body["offset"]


def token(stack, groups, sub="tester", ttl=600):
    status, body = api(stack, "POST", "/api/v1/tokens", {"sub": sub, "groups": list(groups), "ttl": ttl})
    assert status == 200, body
    return body["token"]


def metric(text, name, labels=""):
    """The value of one sample in Prometheus text (0 when absent)."""
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


class Subscriber:
    """Holds one connection, remembers every message and the last offset per group."""

    def __init__(self, url, token, **connect_options):
        self.url = url
        self.token = token
        self.options = connect_options
        self.socket = None
        self.messages = {}  # group -> [(offset, data)]
        self.close_code = None

    async def connect(self, url=None):
        self.url = url or self.url
        self.socket = await websockets.connect(f"{self.url}?token={self.token}", **self.options)
        self.close_code = None
        return self

    def last_offset(self, group):
        received = self.messages.get(group)
        return received[-1][0] if received else None

    async def subscribe(self, group, since=None, timeout=10):
        frame = {"type": "subscribe", "group": group}
        if since is not None:
            frame["since"] = since
        await self.socket.send(json.dumps(frame))
        while True:
            reply = await self.frame(timeout)
            if reply["type"] == "subscribed" and reply["group"] == group:
                return reply
            assert reply["type"] == "message", reply

    async def frame(self, timeout=10):
        frame = json.loads(await asyncio.wait_for(self.socket.recv(), timeout))
        if frame["type"] == "message":
            self.messages.setdefault(frame["group"], []).append((frame["offset"], frame["data"]))
        return frame

    async def receive(self, group, count, timeout=10):
        """Wait until `count` messages of `group` have arrived in all."""
        while len(self.messages.get(group, [])) < count:
            await self.frame(timeout)
        return self.messages[group]

    async def until_closed(self, timeout=20):
        """Read everything the server still sends, then return its close code."""
        try:
            while True:
                await self.frame(timeout)
        except websockets.ConnectionClosed as closed:
            self.close_code = closed.rcvd.code if closed.rcvd else 1006
        return self.close_code

    async def close(self):
        if self.socket is not None:
            await self.socket.close()


class ResumingClient:
    """A client as the contract asks them to be written: when the server closes it (1012,
    4008, or the connection dies), it reconnects — to the next URL in its list — and
    resumes with `since` = the last offset it received."""

    def __init__(self, urls, token, group):
        self.urls = list(urls)
        self.token = token
        self.group = group
        self.received = []  # offsets, in arrival order
        self.position = None  # where a resume starts: the last offset seen
        self.close_codes = []
        self.close_times = []
        self.task = None
        self.subscribed = asyncio.Event()
        self._stop = asyncio.Event()

    def start(self):
        self.task = asyncio.ensure_future(self._run())
        return self

    async def _run(self):
        attempt = 0
        while not self._stop.is_set():
            url = self.urls[attempt % len(self.urls)]
            try:
                async with websockets.connect(f"{url}?token={self.token}", open_timeout=5) as socket:
                    frame = {"type": "subscribe", "group": self.group}
                    if self.position is not None:
                        frame["since"] = self.position
                    await socket.send(json.dumps(frame))
                    async for raw in socket:
                        message = json.loads(raw)
                        if message["type"] == "subscribed":
                            if self.position is None:
                                self.position = message["offset"]
                            self.subscribed.set()
                        elif message["type"] == "message":
                            self.received.append(message["offset"])
                            self.position = message["offset"]
            except websockets.ConnectionClosed as closed:
                self.close_codes.append(closed.rcvd.code if closed.rcvd else 1006)
                self.close_times.append(time.monotonic())
            except OSError:
                self.close_codes.append(None)  # could not connect: try the next URL
            attempt += 1
            if not self._stop.is_set():
                await asyncio.sleep(0.05 * min(attempt, 10))  # reconnect backoff

    async def until_holding(self, offsets, timeout=30):
        """Wait until every offset in `offsets` has arrived."""
        wanted = set(offsets)
        deadline = asyncio.get_running_loop().time() + timeout
        while not wanted <= set(self.received):
            if asyncio.get_running_loop().time() > deadline:
                missing = sorted(wanted - set(self.received))
                raise AssertionError(f"{len(missing)} acknowledged messages never arrived, e.g. {missing[:3]}")
            await asyncio.sleep(0.05)

    async def stop(self):
        self._stop.set()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
