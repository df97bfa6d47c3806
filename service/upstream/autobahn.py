"""autobahn's WebSocket protocol, used below its API (autobahn 26.10.2,
autobahn/websocket/protocol.py, WebSocketProtocol).
"""

from collections import deque

import autobahn.twisted.websocket
import autobahn.websocket.protocol
from autobahn.websocket.protocol import PreparedMessage, TrafficStats, WebSocketProtocol

from service.upstream import twisted

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


# What autobahn keeps of the opening handshake (protocol.py, processHandshake) and never
# reads once the connection is open: the raw request, its parsed headers, its first line,
# the key, host, path and origin, the response it sent.
HANDSHAKE_ATTRIBUTES = (
    "http_request_data", "http_headers", "http_status_line", "http_request_uri", "http_request_params",
    "http_request_host", "http_request_path", "websocket_origin", "_wskey", "http_response_data",
)

# Traffic counters autobahn bumps on every frame and nothing in groupcast reads: one set
# for the process instead of one per connection.
SHARED_TRAFFIC_STATS = TrafficStats()


class LazySendQueue:
    """autobahn's per-connection send queue (a deque, ~0.7 kB) is used only by
    `sendData(sync=True)` or with a chop size, which neither Daphne nor groupcast ask
    for; this stands in for it, empty, until something is queued."""

    __slots__ = ("protocol",)

    def __init__(self, protocol):
        self.protocol = protocol

    def __len__(self):
        return 0

    def append(self, item):
        self.protocol.send_queue = deque([item])


def forget_handshake(protocol):
    """Let go of what an open connection no longer needs (~3 kB of every idle
    connection otherwise): the handshake's request and response, its own traffic
    counters, an empty send queue."""
    for name in HANDSHAKE_ATTRIBUTES:
        protocol.__dict__.pop(name, None)
    protocol.trafficStats = SHARED_TRAFFIC_STATS
    if not protocol.send_queue:
        protocol.send_queue = LazySendQueue(protocol)


def configure(factory):
    """Server-wide protocol options.

    failByDrop=False: when autobahn itself fails a connection (a frame over the size
    limit, a protocol error) the client gets the close code (1009, 1002), not a dropped
    TCP connection it cannot tell from a crash. allowNullOrigin: `Origin: null` (sandboxed
    frames, file: pages) is judged by the application's origin check like any other
    (403), not refused by autobahn with a 400. openHandshakeTimeout=0: one bound on a
    connection's way to an open WebSocket, GROUPCAST_HANDSHAKE_TIMEOUT from its accept
    (service/socket/handshakes.py), not a second one of Daphne's (5 s from the request)
    with a timer per connection (~2% of the socket's CPU per connect in a storm).
    """
    factory.setProtocolOptions(
        closeHandshakeTimeout=CLOSE_HANDSHAKE_TIMEOUT, failByDrop=False, allowNullOrigin=True,
        openHandshakeTimeout=0,
    )
    # autobahn copies each of its ~40 options from the factory onto every new connection
    # that lacks it, and formats the list with pprint for a debug line whatever the log
    # level (protocol.py, _connectionMade): a ~2 kB instance dict per connection, and 11%
    # of a socket process's CPU in a reconnect storm. As class attributes of the factory's
    # own protocol class every connection has them already (shared), and with no
    # CONFIG_ATTRS left to copy there is nothing to format.
    protocol = factory.protocol
    options = {name: _as_class_attribute(getattr(factory, name)) for name in protocol.CONFIG_ATTRS}
    factory.protocol = type(protocol.__name__, (protocol,), {
        **options, "CONFIG_ATTRS": (), "sendData": _send_data,
    })
    skip_debug_formatting()


def _send_data(protocol, data, sync=False, chopsize=None):
    """autobahn's sendData (protocol.py), with what it would hand to the transport sent at
    once when the socket takes it (twisted.write), as the socket fast path's frames are:
    Twisted buffers every write, registers the socket for writing and writes it a pass
    later, two epoll_ctl calls and a pass per handshake answer. Its traffic counters,
    which nothing reads, and its octet log (a debug option) are left out."""
    transport = protocol.transport
    if sync or chopsize or len(protocol.send_queue) or not twisted.writable_now(transport):
        return WebSocketProtocol.sendData(protocol, data, sync, chopsize)
    twisted.write(transport, data)


def skip_debug_formatting():
    """autobahn formats the arguments of its debug lines whatever the log level: `hltype`
    and `hlval` (a qualified name found by inspect, coloured twice by click) about ten
    times per connection, which groupcast never logs. Here they hand the value on as it
    is, formatted only if a debug line is ever written (socket CPU per connect in a
    5,000-client connect storm: 568 -> 508 µs, medians of 8 interleaved runs)."""
    for module in (autobahn.websocket.protocol, autobahn.twisted.websocket):
        module.hltype = module.hlval = _as_is


def _as_is(value, *args, **kwargs):
    return value


def _as_class_attribute(value):
    # an option that is a function (perMessageCompressionAccept) must not become a method
    return staticmethod(value) if callable(value) else value
