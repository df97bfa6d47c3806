"""Twisted's TCP transport, read and written below its API (twisted 26.10.0,
src/twisted/internet/abstract.py, FileDescriptor; src/twisted/protocols/policies.py,
ProtocolWrapper).

The socket fast path needs how many bytes wait for a client (Twisted has no public
count) and writes straight to the socket when Twisted has nothing queued.
"""

from twisted.protocols.policies import ProtocolWrapper


def supported(transport):
    """True when `transport` is a TCP connection with the private fields read here. Not a
    TLS one: a ProtocolWrapper hands unknown attributes on to the TCP transport under it,
    so it seems to have them, but what goes to that socket must be encrypted first."""
    return not isinstance(transport, ProtocolWrapper) and all(
        hasattr(transport, name) for name in ("_tempDataLen", "dataBuffer", "offset", "socket"))


def writable_now(transport):
    """True when `write` below may send to this transport: an open TCP connection."""
    return supported(transport) and transport.connected and not transport.disconnecting


def pending_bytes(transport):
    """Bytes written to the transport that the kernel has not taken yet."""
    return transport._tempDataLen + len(transport.dataBuffer) - transport.offset


def write(transport, data):
    """Write `data` now if the socket takes it, queue in Twisted only what it refuses
    (one send() instead of register-for-writing, wait a pass, send, unregister)."""
    if not transport.connected or transport.disconnecting:
        return
    if transport._tempDataLen == 0 and len(transport.dataBuffer) == transport.offset:
        try:
            sent = transport.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the connection is going; Twisted reports it on its own
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def channel_transport(protocol):
    """The TCP transport of a protocol built by an HTTPFactory, or None before it has one
    (twisted/web/http.py: HTTPFactory.buildProtocol returns _GenericHTTPChannelProtocol,
    a proxy that keeps the HTTPChannel, and so the transport, in `_channel`)."""
    channel = getattr(protocol, "_channel", protocol)
    return getattr(channel, "transport", None)


def hand_over(transport, protocol):
    """Make `protocol` the one `transport` delivers to from now on, as Daphne does when a
    request upgrades (daphne/http_protocol.py, WebRequest.process): a TLS transport is a
    ProtocolWrapper around the protocol it decrypts for, a TCP one names its protocol."""
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    protocol.makeConnection(transport)
