"""The WebSocket protocol's frames: client frames parsed and checked, server frames built.

A message frame is built by string formatting rather than json.dumps: its data is the
already-serialised JSON stored at publish time and group and offset come from fixed
alphabets, so the frame is exact JSON without a decode/encode round trip per message.
"""

import json
from dataclasses import dataclass

from service.groups import is_group_name, parse_offset


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
        raise FrameError(
            "bad_group", "group must be 1-100 characters of A-Z a-z 0-9 _ . -"
        )
    since = body.get("since")
    if kind == "subscribe" and since is not None:
        try:
            parse_offset(since)
        except ValueError:
            raise FrameError(
                "bad_offset", "since must be an offset such as 1700000000000-0", group
            ) from None
    return ClientFrame(kind, group, since if kind == "subscribe" else None)


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
