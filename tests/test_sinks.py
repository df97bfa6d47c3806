"""The fast path (DaphneSink) on real parts: autobahn's protocol over Twisted's TCP
transport on a real socket pair. The test reads what a client would read from the other
end, and plays the reactor's part (doWrite) where Twisted has to queue."""

import asyncio
import contextlib
import functools
import socket
import struct

import pytest

from service.socket.frames import Frame
from service.socket.sinks import AsgiSink, DaphneSink, sink_for

# after the sinks: Daphne installs Twisted's asyncio reactor when imported
from autobahn.twisted.websocket import WebSocketServerProtocol  # noqa: E402, I001
from twisted.internet import reactor, tcp  # noqa: E402


class Peer:
    """The client's end of the connection: reads server frames (unmasked) off the socket."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = b""

    def read_available(self):
        """Every byte the server has sent so far; never waits."""
        chunks = []
        while True:
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        data = b"".join(chunks)
        self.buffer += data
        return data

    def payloads(self):
        """The text payloads of the complete frames read so far, in order."""
        payloads, data = [], self.buffer
        while len(data) >= 2:
            length, header = data[1] & 0x7F, 2
            if length == 126:
                length, header = struct.unpack("!H", data[2:4])[0], 4
            elif length == 127:
                length, header = struct.unpack("!Q", data[2:10])[0], 10
            if len(data) < header + length:
                break
            assert data[0] == 0x81  # FIN + text
            payloads.append(data[header : header + length])
            data = data[header + length :]
        return payloads


@contextlib.contextmanager
def over_tcp(protocol):
    """(peer, transport): `protocol` on Twisted's TCP transport over a real socket pair."""
    ours, theirs = socket.socketpair()
    theirs.setblocking(False)
    transport = tcp.Connection(ours, protocol, reactor)
    transport.connected = 1  # as Twisted's accept does
    protocol.transport = transport
    try:
        yield Peer(theirs), transport
    finally:
        ours.close()
        theirs.close()


@pytest.fixture
async def connection():
    """(sink, peer, transport) for one open WebSocket over Twisted's TCP transport, the sink
    made in the event loop as the consumer makes it."""
    protocol = WebSocketServerProtocol()
    with over_tcp(protocol) as (peer, transport):
        protocol.state = WebSocketServerProtocol.STATE_OPEN
        protocol._perMessageCompress = None  # as an opening handshake without compression leaves it
        sink = sink_for(functools.partial(lambda protocol, message: None, protocol))
        yield sink, peer, transport


async def end_of_pass():
    """Resolves after everything the current pass of the event loop scheduled."""
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    await done


def frames(*texts):
    return [Frame("news", f"{n + 1}-0", text.encode()) for n, text in enumerate(texts)]


async def test_daphnes_send_callable_gets_the_direct_sink(connection):
    sink, _, _ = connection
    assert isinstance(sink, DaphneSink)
    assert isinstance(sink_for(lambda message: None), AsgiSink)


async def test_frames_written_in_one_pass_leave_in_one_send_at_its_end(connection):
    sink, peer, transport = connection
    batch = frames('"a"', '"b"', '"c"')
    for frame in batch:
        sink.write(frame)
    assert peer.read_available() == b""  # nothing goes out mid-pass
    assert sink.pending() == sum(len(frame.wire) for frame in batch)
    await end_of_pass()
    assert peer.read_available() == b"".join(frame.wire for frame in batch)
    assert sink.pending() == 0 and transport.dataBuffer == b"" and transport._tempDataLen == 0
    assert peer.payloads() == [frame.payload for frame in batch]


async def test_a_writer_that_fails_at_the_end_of_a_pass_stops_no_flush(connection):
    sink, peer, _ = connection
    first, second = frames('"first"', '"second"')
    sink.write(first)

    def failing():
        raise RuntimeError("a bug in a writer")

    sink.batches.write_at_end(failing)
    with pytest.raises(RuntimeError):
        sink.batches.flush()  # as the loop would call it, which logs the error
    assert peer.read_available() and peer.payloads() == [first.payload]  # out regardless
    sink.write(second)
    await end_of_pass()  # and the next pass is flushed as usual
    assert peer.read_available() and peer.payloads() == [first.payload, second.payload]


async def test_what_the_socket_refuses_waits_in_twisted_counted_and_in_order(connection):
    sink, peer, transport = connection
    transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    big = "x" * 1_000_000
    first, second = frames(f'"{big}"', '"after"')
    sink.write(first)
    await end_of_pass()
    waiting = sink.pending()
    assert 0 < waiting < len(first.wire)  # the kernel took part; Twisted holds the rest
    sink.write(second)
    await end_of_pass()
    assert sink.pending() == waiting + len(second.wire)  # queued behind, not sent ahead
    while sink.pending():
        peer.read_available()
        transport.doWrite()  # what the reactor does when the socket is writable
    peer.read_available()
    assert peer.payloads() == [first.payload, second.payload]


async def test_control_frames_go_out_at_once_behind_the_pending_batch(connection):
    sink, peer, _ = connection
    message = frames('"m"')[0]
    sink.write(message)
    sink.send_text('{"type":"pong"}')
    assert peer.read_available()  # no wait for the end of the pass
    assert peer.payloads() == [message.payload, b'{"type":"pong"}']


def configured_protocol():
    """A protocol of a factory set up as the socket server sets up Daphne's
    (autobahn.configure)."""
    from autobahn.twisted.websocket import WebSocketServerFactory

    from service.upstream import autobahn

    factory = WebSocketServerFactory()
    autobahn.configure(factory)
    protocol = factory.protocol()
    protocol.factory = factory
    protocol.send_queue = []
    return protocol


async def test_autobahns_own_writes_go_to_the_socket_at_once_unless_twisted_holds_some():
    # The handshake's answer, close frames, pongs: Twisted would buffer each, register the
    # socket for writing and send it a pass later.
    protocol = configured_protocol()
    with over_tcp(protocol) as (peer, transport):
        protocol.sendData(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        assert peer.read_available() == b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
        assert transport.dataBuffer == b"" and transport._tempDataLen == 0
        # behind bytes Twisted still holds, a write queues in order
        transport.write(b"held")
        protocol.sendData(b" then this")
        assert peer.read_available() == b""
        transport.doWrite()
        assert peer.read_available() == b"held then this"
