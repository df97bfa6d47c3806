"""Group names and offsets: the two identifiers every part of groupcast agrees on."""

import functools
import re

# The Channels group-name alphabet, up to 100 characters.
GROUP_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
# The rule, as every error message states it.
GROUP_RULE = "1-100 characters of A-Z a-z 0-9 _ . -"
# A Redis Stream id: milliseconds, optionally "-sequence"; ASCII digits, each part < 2**64.
OFFSET = re.compile(r"([0-9]{1,20})(?:-([0-9]{1,20}))?")
PART_LIMIT = 2**64
LAST_ID = (PART_LIMIT - 1, PART_LIMIT - 1)
# The offset before any message; `since` with it replays the whole retained history.
ORIGIN = "0-0"


def is_group_name(value):
    return isinstance(value, str) and GROUP_NAME.fullmatch(value) is not None


# A token's groups: an exact name, or a prefix of one ending in "*" ("room.*"; "*" alone
# is every group).
GROUP_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,100}|[A-Za-z0-9_.-]{0,99}\*")


def is_group_pattern(value):
    return isinstance(value, str) and GROUP_PATTERN.fullmatch(value) is not None


class GroupPatterns:
    """The groups a token names: exact names and prefixes."""

    __slots__ = ("names", "prefixes")

    def __init__(self, patterns=()):
        self.names = frozenset(p for p in patterns if not p.endswith("*"))
        self.prefixes = tuple(sorted({p[:-1] for p in patterns if p.endswith("*")}))

    def allows(self, group):
        return group in self.names or any(group.startswith(prefix) for prefix in self.prefixes)

    def __bool__(self):
        return bool(self.names or self.prefixes)

    def __eq__(self, other):
        return isinstance(other, GroupPatterns) and (self.names, self.prefixes) == (other.names, other.prefixes)

    def __hash__(self):
        return hash((self.names, self.prefixes))

    def __repr__(self):
        return f"GroupPatterns({sorted(self.names) + [p + '*' for p in self.prefixes]})"


@functools.lru_cache(maxsize=4096)
def _shared_patterns(patterns):
    return GroupPatterns(patterns)


def group_patterns(patterns):
    """GroupPatterns of a token's list, one object for every connection whose token names
    the same list (most name a few common lists; a set costs ~0.5 kB per connection)."""
    return _shared_patterns(tuple(patterns))


def parse_offset(value):
    """An offset as a comparable (milliseconds, sequence) pair; ValueError if malformed."""
    match = OFFSET.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"not an offset: {value!r}")
    millis, sequence = int(match[1]), int(match[2] or 0)
    # The very last stream id is out of range too: nothing can come after it, and Redis
    # refuses it as the exclusive start of a range.
    if millis >= PART_LIMIT or sequence >= PART_LIMIT or (millis, sequence) == LAST_ID:
        raise ValueError(f"offset out of range: {value!r}")
    return millis, sequence


def offset_after(offset, other):
    """True when `offset` comes strictly after `other` (None comes before everything)."""
    if other is None:
        return True
    return parse_offset(offset) > parse_offset(other)


def offset_millis(offset):
    """The Redis server time, in milliseconds, at which the message was stored."""
    return parse_offset(offset)[0]
