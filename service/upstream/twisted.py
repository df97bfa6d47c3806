"""Twisted's TCP transport, read and written below its API (twisted 26.10.0,
src/twisted/internet/abstract.py, FileDescriptor).

The socket fast path needs how many bytes wait for a client (Twisted has no public
count) and writes straight to the socket when Twisted has nothing queued.
"""


def supported(transport):
    """True when `transport` has the private fields read here."""
    return all(hasattr(transport, name) for name in ("_tempDataLen", "dataBuffer", "offset", "socket"))


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
