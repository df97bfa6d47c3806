"""Group names and offsets: the two identifiers every part of groupcast agrees on."""

import re

# The Channels group-name alphabet, up to 100 characters.
GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
# A Redis Stream id: milliseconds, optionally "-sequence".
OFFSET = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?")
# The offset before any message; `since` with it replays the whole retained history.
ORIGIN = "0-0"


def is_group_name(value):
    return isinstance(value, str) and GROUP_NAME.fullmatch(value) is not None


def parse_offset(value):
    """An offset as a comparable (milliseconds, sequence) pair; ValueError if malformed."""
    match = OFFSET.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"not an offset: {value!r}")
    return int(match[1]), int(match[2] or 0)


def offset_after(offset, other):
    """True when `offset` comes strictly after `other` (None comes before everything)."""
    if other is None:
        return True
    return parse_offset(offset) > parse_offset(other)


def offset_millis(offset):
    """The Redis server time, in milliseconds, at which the message was stored."""
    return parse_offset(offset)[0]
