"""The WebSocket protocol's frames: client frames parsed and checked, server frames built.

A message frame is built by string formatting rather than json.dumps: its data is the
already-serialised JSON stored at publish time and group and offset come from fixed
alphabets, so the frame is exact JSON without a decode/encode round trip per message.
A Frame carries one message's frame, built once per process for every local member.
"""

import json
import time
from dataclasses import dataclass

from service.groups import GROUP_RULE, is_group_name, parse_offset
from service.storage.publishing import encode_data
from service.upstream import autobahn


class FrameError(Exception):
    """A client frame the server cannot act on; answered with an error frame."""

    def __init__(self, code, message, group=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.group = group


@dataclass(frozen=True, slots=True)
class ClientFrame:
    type: str
    group: str | None = None
    since: str | None = None
    # subscribe: be listed among the group's members (and get join/leave, unless
    # join_leave is false: large groups)
    presence: bool = False
    join_leave: bool = True
    # publish: the message, as JSON text
    data_json: str | None = None
    # refresh: the new token
    token: str | None = None


CLIENT_TYPES = ("ping", "subscribe", "unsubscribe", "publish", "refresh")


def parse_client_frame(text):
    """Check one text frame from a client and return what it asks for."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError("bad_json", "frame is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise FrameError("bad_frame", 'frame must be a JSON object with a string "type"')
    kind = body["type"]
    if kind not in CLIENT_TYPES:
        raise FrameError("unknown_type", f"unknown frame type {kind[:40]!r}")
    if kind == "ping":
        return ClientFrame("ping")
    if kind == "refresh":
        token = body.get("token")
        if not isinstance(token, str) or not token:
            raise FrameError("bad_frame", 'refresh needs "token": the new token')
        return ClientFrame("refresh", token=token)
    group = body.get("group")
    if not is_group_name(group):
        raise FrameError("bad_group", f"group must be {GROUP_RULE}")
    if kind == "publish":
        if "data" not in body:
            raise FrameError("bad_frame", '"data" is required (any JSON value)', group)
        try:
            data_json = encode_data(body["data"])
            data_json.encode()  # lone surrogates parse but cannot be stored or sent on
        except (ValueError, UnicodeEncodeError):
            raise FrameError("bad_frame", '"data" is not valid JSON text', group) from None
        return ClientFrame("publish", group, data_json=data_json)
    if kind == "unsubscribe":
        return ClientFrame("unsubscribe", group)
    since = body.get("since")
    if since is not None:
        try:
            parse_offset(since)
        except ValueError:
            raise FrameError(
                "bad_offset", "since must be an offset such as 1700000000000-0", group
            ) from None
    presence, join_leave = body.get("presence", False), body.get("join_leave", True)
    if not isinstance(presence, bool) or not isinstance(join_leave, bool):
        raise FrameError("bad_frame", '"presence" and "join_leave" must be true or false', group)
    return ClientFrame("subscribe", group, since, presence, join_leave)


class Frame:
    """One published message, serialised and framed once per process and then written
    to every local member."""

    __slots__ = ("group", "offset", "data_json", "payload", "_wire", "_sse")

    def __init__(self, group, offset, data_json):
        self.group = group
        self.offset = offset
        self.data_json = data_json
        self.payload = message_frame(group, offset, data_json)
        self._wire = None
        self._sse = None

    @property
    def wire(self):
        """The complete WebSocket frame."""
        if self._wire is None:
            self._wire = autobahn.frame(self.payload)
        return self._wire

    @property
    def sse_data(self):
        """The message as an SSE event's data: {"group", "offset", "data"}."""
        if self._sse is None:
            self._sse = b'{"group":"%s","offset":"%s","data":%s}' % (
                self.group.encode(), self.offset.encode(), self.data_json,
            )
        return self._sse


class Burst:
    """One group's messages heard in one pass of the event loop, in order: written to
    each local member together, one check and one list extend per member rather than per
    message (service/socket/fanout.py)."""

    __slots__ = ("frames", "wires", "size", "heard")

    def __init__(self):
        self.heard = time.perf_counter()  # when its first message reached the process
        self.frames = []
        self.wires = []  # their complete WebSocket frames
        self.size = 0  # bytes of those

    def add(self, frame):
        wire = frame.wire
        self.frames.append(frame)
        self.wires.append(wire)
        self.size += len(wire)


class ControlFrame:
    """A protocol frame (subscribed, error, pong) sent through the same batch as messages."""

    __slots__ = ("wire",)

    def __init__(self, text):
        self.wire = autobahn.frame(text.encode())


def message_frame(group, offset, data_json):
    """The frame of one published message, as UTF-8 bytes."""
    return b'{"type":"message","group":"%s","offset":"%s","data":%s}' % (
        group.encode(),
        offset.encode(),
        data_json,
    )


def subscribed_frame(group, offset, members=None, member_count=None):
    body = {"type": "subscribed", "group": group, "offset": offset}
    if members is not None:
        body["members"] = members
        body["member_count"] = member_count
    return _dump(body)


def published_frame(group, offset):
    return _dump({"type": "published", "group": group, "offset": offset})


def unsubscribed_frame(group, reason):
    return _dump({"type": "unsubscribed", "group": group, "reason": reason})


def refreshed_frame(exp):
    return _dump({"type": "refreshed", "exp": int(exp)})


def expiring_frame(seconds):
    return _dump({"type": "expiring", "in": max(0, int(seconds))})


def join_frame(group, sub, info_json):
    """A member's join; its info is the JSON text stored when it joined."""
    return '{"type":"join","group":%s,"sub":%s,"info":%s}' % (
        json.dumps(group), json.dumps(sub), info_json or "null",
    )


def leave_frame(group, sub):
    return _dump({"type": "leave", "group": group, "sub": sub})


def error_frame(code, message, group=None):
    body = {"type": "error", "code": code, "message": message}
    if group is not None:
        body["group"] = group
    return _dump(body)


PONG = '{"type":"pong"}'


def _dump(body):
    return json.dumps(body, separators=(",", ":"))
