"""A WebSocket test client written from the public contract, plus HTTP helpers."""

import asyncio
import json
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
