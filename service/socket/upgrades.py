"""WebSocket upgrades straight to autobahn.

Daphne serves every connection with Twisted's HTTP channel: it parses the request line and
headers into a Request, and for a WebSocket upgrade writes them back out as bytes for
autobahn, which parses them again (daphne/http_protocol.py, WebRequest.process). In a
reconnect storm that first parse, with the channel and request objects around it, was
~15% of the socket process's CPU per connect.

`FirstRequest` stands for a new connection until its first bytes arrive. When they are a
whole WebSocket upgrade that Twisted and Daphne would hand to autobahn unchanged, they go
to autobahn directly; anything else — a probe, a scrape, an SSE stream, a head split over
reads, a header these rules do not know — goes to Twisted's channel as before, which
answers it as it always has (its limits, Daphne's 400s).
"""

import re

from twisted.internet.protocol import Protocol

from service.upstream import daphne, twisted

# Twisted's HTTPChannel.totalHeadersSize and maxHeaders: a longer head is Twisted's to refuse.
MAX_HEAD_BYTES = 16384
MAX_HEADERS = 500
REQUEST_LINE = re.compile(rb"GET (/[\x21-\x7e]*) HTTP/1\.1")
# Daphne's header-name rule (daphne/utils.py, HEADER_NAME_RE); values of visible ASCII,
# spaces and tabs (Twisted and Daphne refuse less; what is refused here goes to them).
HEADER = re.compile(rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*([\x20-\x7e\t]*?)[ \t]*")
# A body would be the HTTP channel's to read.
BODY_HEADERS = (b"content-length", b"transfer-encoding")


def websocket_upgrade(data):
    """The query string of `data` when it is exactly one whole WebSocket upgrade request
    the fast way may take; None otherwise."""
    if len(data) > MAX_HEAD_BYTES or not data.endswith(b"\r\n\r\n"):
        return None
    line, *fields = data[:-4].split(b"\r\n")
    request = REQUEST_LINE.fullmatch(line)
    if request is None or len(fields) > MAX_HEADERS:
        return None
    names, upgrade = set(), None
    for field in fields:
        header = HEADER.fullmatch(field)
        if header is None:
            return None
        name = header[1].lower()
        if name in names or name in BODY_HEADERS:
            return None  # Twisted joins repeated headers, autobahn refuses some: theirs
        names.add(name)
        if name == b"upgrade":
            upgrade = header[2].lower()
    if upgrade != b"websocket":
        return None
    _, _, query_string = request[1].partition(b"?")
    return query_string


class FirstRequest(Protocol):
    """A new connection until its first bytes say whether it is a WebSocket upgrade."""

    def __init__(self, server, build_http, addr):
        self.server = server
        self.build_http = build_http
        self.addr = addr

    def dataReceived(self, data):
        query_string = websocket_upgrade(data)
        if query_string is not None and daphne.open_websocket(self.server, self.transport, data, query_string):
            return
        channel = self.build_http(self.addr)
        if channel is None:
            self.transport.loseConnection()
            return
        twisted.hand_over(self.transport, channel)
        channel.dataReceived(data)


def direct_upgrades(factory):
    """Serve `factory`'s connections (Daphne's HTTPFactory) through FirstRequest."""
    build_http = factory.buildProtocol

    def build(addr):
        return FirstRequest(factory.server, build_http, addr)

    factory.buildProtocol = build
