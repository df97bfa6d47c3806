"""A groupcast client from outside the cluster: the HTTP API and resuming WebSocket subscribers.

Speaks only the public contract (shared design, "Public contract"): POST /api/v1/tokens,
/api/v1/publish, /api/v1/jobs, GET /api/v1/groups/<g>, /api/v1/jobs/<id>; and on /ws the
frames subscribe/subscribed/message/error with close 1012 meaning "reconnect, resume with since".
"""

import asyncio
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.message import Message

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

RESTARTING = 1012


@dataclass
class Response:
    status: int
    body: dict
    # http.client's message: names compare case-insensitively, as HTTP's do (uvicorn
    # sends them in lower case, nginx its own capitalised)
    headers: Message


class Api:
    """The HTTP API with one API key."""

    def __init__(self, base_url, api_key):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key

    def request(self, method, path, body=None, timeout=10):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.base_url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return Response(answer.status, json.loads(answer.read() or b"{}"), answer.headers)
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = {"raw": raw.decode(errors="replace")}
            return Response(error.code, parsed, error.headers)

    def token(self, groups, sub="e2e", ttl=3600):
        answer = self.request("POST", "/api/v1/tokens", {"sub": sub, "groups": list(groups), "ttl": ttl})
        assert answer.status == 200, f"token: {answer}"
        return answer.body["token"]

    def publish(self, group, data, timeout=10):
        return self.request("POST", "/api/v1/publish", {"group": group, "data": data}, timeout=timeout)

    def disconnect(self, sub):
        answer = self.request("POST", "/api/v1/disconnect", {"sub": sub})
        assert answer.status == 200, f"disconnect {sub}: {answer}"
        return answer.body["disconnected"]

    def group(self, group):
        answer = self.request("GET", f"/api/v1/groups/{group}")
        assert answer.status == 200, f"group {group}: {answer}"
        return answer.body

    async def apublish(self, group, data, timeout=10):
        return await asyncio.to_thread(self.publish, group, data, timeout)


class Subscriber:
    """One WebSocket connection subscribed to some groups.

    Keeps every message frame in arrival order. When the server closes with 1012 (or the
    connection drops), it reconnects through `reconnect_url` and resubscribes each group
    with `since` = the last offset it holds, as a real client does.
    """

    def __init__(self, name, url, token, groups, reconnect_url=None, since=None):
        self.name = name
        self.url = url
        self.reconnect_url = reconnect_url or url
        self.token = token
        self.groups = list(groups)
        self.messages = []  # every message frame, in arrival order
        # group -> last offset held (`since` given, else from `subscribed`, then from messages)
        self.last_offset = {group: since for group in self.groups} if since else {}
        self.closes = []  # close codes seen
        self.errors = []  # error frames
        self.connects = 0
        self.retries = 0  # subscribes repeated after an `unavailable` error
        self._subscribed = asyncio.Event()
        self._changed = asyncio.Event()
        self._task = None
        self._stopping = False

    async def start(self, timeout=15):
        """Connect and subscribe; returns once every group answered `subscribed`."""
        self._task = asyncio.create_task(self._run())
        try:
            await asyncio.wait_for(self._subscribed.wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: not subscribed to {self.groups} within {timeout} s "
                f"(connects={self.connects}, closes={self.closes}, errors={self.errors})"
            ) from None
        return self

    async def stop(self):
        self._stopping = True
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    def _subscribe_frame(self, group):
        frame = {"type": "subscribe", "group": group}
        if group in self.last_offset:
            frame["since"] = self.last_offset[group]
        return json.dumps(frame)

    def offsets(self, group):
        return [m["offset"] for m in self.messages if m["group"] == group]

    async def wait_for(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{self.name}: timed out after {timeout} s waiting for {what} (connects={self.connects}, "
                    f"closes={self.closes}, errors={self.errors}, last offsets={self.last_offset})"
                )
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
            except TimeoutError:
                pass

    async def _run(self):
        url = self.url
        backoff = 0.2
        while not self._stopping:
            try:
                async with connect(f"{url}?token={self.token}", open_timeout=10, close_timeout=5,
                                   max_size=2**20, ping_interval=20) as ws:
                    self.connects += 1
                    backoff = 0.2
                    for group in self.groups:
                        await ws.send(self._subscribe_frame(group))
                    pending = set(self.groups)
                    async for raw in ws:
                        frame = json.loads(raw)
                        kind = frame.get("type")
                        if kind == "message":
                            self.messages.append(frame)
                            self.last_offset[frame["group"]] = frame["offset"]
                        elif kind == "subscribed":
                            if frame["group"] not in self.last_offset and frame.get("offset"):
                                self.last_offset[frame["group"]] = frame["offset"]
                            pending.discard(frame["group"])
                            if not pending:
                                self._subscribed.set()
                        elif kind == "error":
                            self.errors.append(frame)
                            if frame.get("code") == "unavailable" and frame.get("group") in pending:
                                # "subscription failed, try again": as a client would, shortly
                                self.retries += 1
                                await asyncio.sleep(0.5)
                                await ws.send(self._subscribe_frame(frame["group"]))
                        self._changed.set()
                # the server closed cleanly
                self.closes.append(ws.close_code)
            except ConnectionClosed as closed:
                self.closes.append(closed.rcvd.code if closed.rcvd else None)
            except (OSError, InvalidHandshake, InvalidStatus, TimeoutError) as error:
                self.closes.append(f"connect failed: {type(error).__name__}")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            if self.closes and self.closes[-1] == 4009:
                self._changed.set()
                return  # disconnected by the server: the contract says not to come back
            self._changed.set()
            url = self.reconnect_url  # the pod it was on may be gone: go through the Service


def assert_exactly_once_in_order(subscriber, group, acked):
    """Every acknowledged offset once, in stream order; nothing held twice."""
    held = subscriber.offsets(group)
    assert len(held) == len(set(held)), f"{subscriber.name}: duplicates in {group}: {duplicates(held)}"
    assert held == sorted(held, key=offset_key), f"{subscriber.name}: {group} out of order"
    missing = [o for o in acked if o not in set(held)]
    assert not missing, f"{subscriber.name}: {len(missing)} acknowledged messages missing in {group}: {missing[:10]}"


def offset_key(offset):
    millis, _, seq = offset.partition("-")
    return int(millis), int(seq or 0)


def duplicates(items):
    seen, dup = set(), []
    for item in items:
        if item in seen:
            dup.append(item)
        seen.add(item)
    return dup
