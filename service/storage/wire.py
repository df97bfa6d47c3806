"""How a group's traffic is named and encoded on Redis pub/sub.

Every payload is one tag byte, then its body. The publish script (Lua), the socket
processes and the channel layer (Python) all take the encoding from here, so the sides
cannot drift.
"""

ANNOUNCEMENT = ord("P")  # P<offset> <data json>: a message stored in the group's stream
EVENT = ord("S")  # S<sender's client prefix> <serialized dict>: a Channels group_send event
DISCARD = ord("D")  # D<channel name>: a group_discard made in another process
JOIN = ord("J")  # J<bytes in sub>:<sub><info json>: a member's first connection joined
LEAVE = ord("L")  # L<sub>: a member's last connection left the group


def announcement_lua(offset, data_json):
    """The Lua expression announcing a stored message, given Lua expressions for its parts."""
    return f"'{chr(ANNOUNCEMENT)}' .. {offset} .. ' ' .. {data_json}"


def announcement(offset, data_json):
    """The announcement of a stored message (what the publish script sends)."""
    return b"%c%s %s" % (ANNOUNCEMENT, offset.encode(), data_json)


def announcement_parts(payload):
    """(offset, data JSON bytes) of an announcement."""
    offset, _, data_json = payload[1:].partition(b" ")
    return offset.decode(), data_json


def event(origin, serialized):
    """A group_send event; `origin` (the sending layer's client prefix) lets the sending
    process skip its own event, whose local members it served already."""
    return b"%c%s %s" % (EVENT, origin.encode(), serialized)


def event_parts(payload):
    """(origin, serialized message) of an event."""
    origin, _, serialized = payload[1:].partition(b" ")
    return origin.decode(), serialized


def discard(channel):
    return bytes([DISCARD]) + channel.encode()


def join_lua(sub, info_json):
    """The Lua expression of a join, given Lua expressions for its parts (a sub may hold
    any character, so its length comes first)."""
    return f"'{chr(JOIN)}' .. #{sub} .. ':' .. {sub} .. {info_json}"


def leave_lua(sub):
    return f"'{chr(LEAVE)}' .. {sub}"


def join_parts(payload):
    """(sub, info JSON text) of a join."""
    length, _, rest = payload[1:].partition(b":")
    size = int(length)
    return rest[:size].decode(), rest[size:].decode()


def body(payload):
    """The payload without its tag."""
    return payload[1:]


def group_channel(prefix, db, group, *, cluster=False):
    """The pub/sub channel of a group. Pub/sub ignores the database, so its number is in
    the name: deployments sharing a Redis server by prefix or by database stay apart. On a
    Redis Cluster the group is a hash tag: the channel is in the slot of the group's keys."""
    return f"{prefix}:fanout:{db}:{{{group}}}" if cluster else f"{prefix}:fanout:{db}:{group}"


def channel_group(prefix, db, channel, *, cluster=False):
    """The group of a group's pub/sub channel (group_channel's inverse)."""
    group = channel[len(group_channel(prefix, db, "")):]
    return group[1:-1] if cluster else group
