"""How a group's traffic is encoded on its Redis pub/sub channel.

Every payload is one tag byte, then its body. The publish script (Lua) and the socket
processes (Python) both take the encoding from here, so the two sides cannot drift.
"""

ANNOUNCEMENT = ord("P")  # P<offset> <data json>: a message stored in the group's stream
EVENT = ord("S")  # S<serialized dict>: a Channels group_send event
DISCARD = ord("D")  # D<channel name>: a group_discard made in another process


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


def event(serialized):
    return bytes([EVENT]) + serialized


def discard(channel):
    return bytes([DISCARD]) + channel.encode()


def body(payload):
    """The payload without its tag."""
    return payload[1:]
