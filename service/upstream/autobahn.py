"""autobahn's WebSocket protocol, used below its API (autobahn 26.10.2,
autobahn/websocket/protocol.py, WebSocketProtocol).
"""

from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol

# How long a client has to answer our close frame before the TCP connection is dropped;
# autobahn's 1 s default would cut off a slow client before it reads its 4008.
CLOSE_HANDSHAKE_TIMEOUT = 5


def frame(payload):
    """A complete unmasked text frame (server frames are unmasked, so one fits every client)."""
    return PreparedMessage(payload, False, False, True).payloadHybi


def is_protocol(value):
    return isinstance(value, WebSocketProtocol)


def uncompressed(protocol):
    """True when no permessage-deflate was negotiated (a prepared frame can go as is)."""
    return protocol._perMessageCompress is None


def is_open(protocol):
    return protocol.state == WebSocketProtocol.STATE_OPEN


def server_close_code(protocol):
    """The code of a close autobahn started itself (such as 1009 for a frame over the
    size limit), which Daphne reports as the client's 1006; None otherwise."""
    return protocol.localCloseCode if protocol.closedByMe else None


def send_close(protocol, code, reason):
    """Start the close handshake with any code: autobahn's sendClose refuses 1009, 1012
    and 1013, which groupcast sends on purpose."""
    protocol.sendCloseFrame(code=code, reasonUtf8=reason.encode()[:123])


def configure(factory):
    """Server-wide protocol options.

    failByDrop=False: when autobahn itself fails a connection (a frame over the size
    limit, a protocol error) the client gets the close code (1009, 1002), not a dropped
    TCP connection it cannot tell from a crash. allowNullOrigin: `Origin: null` (sandboxed
    frames, file: pages) is judged by the application's origin check like any other
    (403), not refused by autobahn with a 400.
    """
    factory.setProtocolOptions(
        closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT, failByDrop=False, allowNullOrigin=True
    )
