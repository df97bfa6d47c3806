"""The WebSocket protocol's frames: client frames parsed and checked, server frames built.

A message frame is built by string formatting rather than json.dumps: its data is the
already-serialised JSON stored at publish time and group and offset come from fixed
alphabets, so the frame is exact JSON without a decode/encode round trip per message.
A Frame carries one message's frame, built once per process for every local member.
"""

import json
from dataclasses import dataclass

from service.groups import GROUP_RULE, is_group_name, parse_offset
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


def parse_client_frame(text):
    """Check one text frame from a client and return what it asks for."""
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):
        raise FrameError("bad_json", "frame is not valid JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise FrameError("bad_frame", 'frame must be a JSON object with a string "type"')
    kind = body["type"]
    if kind == "ping":
        return ClientFrame("ping")
    if kind not in ("subscribe", "unsubscribe"):
        raise FrameError("unknown_type", f"unknown frame type {kind[:40]!r}")
    group = body.get("group")
    if not is_group_name(group):
        raise FrameError("bad_group", f"group must be {GROUP_RULE}")
    since = body.get("since")
    if kind == "subscribe" and since is not None:
        try:
            parse_offset(since)
        except ValueError:
            raise FrameError(
                "bad_offset", "since must be an offset such as 1700000000000-0", group
            ) from None
    return ClientFrame(kind, group, since if kind == "subscribe" else None)


class Frame:
    """One published message, serialised and framed once per process and then written
    to every local member."""

    __slots__ = ("group", "offset", "payload", "_wire", "_event")

    def __init__(self, group, offset, data_json):
        self.group = group
        self.offset = offset
        self.payload = message_frame(group, offset, data_json)
        self._wire = None
        self._event = None

    @property
    def wire(self):
        """The complete WebSocket frame."""
        if self._wire is None:
            self._wire = autobahn.frame(self.payload)
        return self._wire

    @property
    def event(self):
        """The message as a Channels event, for plain channels in the group."""
        if self._event is None:
            self._event = {
                "type": "groupcast.message",
                "group": self.group,
                "offset": self.offset,
                "data": json.loads(self.payload)["data"],
            }
        return self._event


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


def subscribed_frame(group, offset):
    return _dump({"type": "subscribed", "group": group, "offset": offset})


def error_frame(code, message, group=None):
    body = {"type": "error", "code": code, "message": message}
    if group is not None:
        body["group"] = group
    return _dump(body)


PONG = '{"type":"pong"}'


def _dump(body):
    return json.dumps(body, separators=(",", ":"))
