"""A subscriber: one client WebSocket as a member of groups.

It owns the connection's sink, the groups it joined, its frame rate budget, and the
policy for a client that cannot keep up: once more than GROUPCAST_SEND_QUEUE_BYTES wait
for it, it is closed with 4008 and every message it does not get is counted. Nothing is
skipped silently; the client resumes by offset.
"""

import asyncio
import json
import time

from django.conf import settings

from service import metrics
from service.socket import frames
from service.socket.frames import Frame

TOO_SLOW = 4008
DISCONNECTED = 4009  # by the server (the API): do not reconnect with the same token
RESTARTING = 1012
TRY_AGAIN_LATER = 1013
TOO_LARGE = 1009
BAD_TOKEN = 4001
FORBIDDEN = 4003
# How long a replay waits for a client to take what it was sent before calling it slow.
REPLAY_STALL_SECONDS = 10.0


class Subscriber:
    __slots__ = (
        "channel_name", "sink", "claims", "groups", "present", "close_code", "proxy_answers",
        "connected_at", "_limit", "_tokens", "_refilled",
    )

    def __init__(self, *, channel_name, sink, claims=None):
        self.channel_name = channel_name
        self.sink = sink
        # the token's claims (None for a connection refused at its handshake)
        self.claims = claims
        self.groups = set()
        # the groups it is listed in as a member (asked for presence)
        self.present = set()
        self.connected_at = time.monotonic()
        self.close_code = None
        # group -> the subscribe proxy's answer, once it was asked (service/socket/subscribe_proxy.py)
        self.proxy_answers = None
        self._limit = settings.GROUPCAST_SEND_QUEUE_BYTES
        self._tokens = 2 * settings.GROUPCAST_CLIENT_RATE
        self._refilled = time.monotonic()

    @property
    def sub(self):
        return self.claims.sub if self.claims is not None else ""

    @property
    def info_json(self):
        info = self.claims.info if self.claims is not None else None
        return json.dumps(info, separators=(",", ":"), ensure_ascii=False) if info is not None else "null"

    def may_subscribe(self, group):
        return self.claims is not None and self.claims.groups.allows(group)

    def may_publish(self, group):
        return self.claims is not None and self.claims.publish.allows(group)

    @property
    def closing(self):
        return self.close_code is not None

    def write(self, frame):
        """Write one message frame; return 1 if written, 0 if not (and count why)."""
        if self.close_code is not None or not self.sink.open:
            metrics.DROPPED.labels("closed").inc()
            return 0
        if self.sink.pending() > self._limit:
            metrics.DROPPED.labels("slow_client").inc()
            self.close(TOO_SLOW, "too slow: send queue full, resume with since")
            return 0
        self.sink.write(frame)
        return 1

    def write_burst(self, burst):
        """write() each frame of a Burst, in order; return how many were written. With
        room for all of them, one check for the lot."""
        if self.close_code is not None or not self.sink.open:
            metrics.DROPPED.labels("closed").inc(len(burst.frames))
            return 0
        if self.sink.pending() + burst.size > self._limit:
            # which frame finds the queue full, and what is counted, as one at a time
            return sum(self.write(frame) for frame in burst.frames)
        self.sink.write_burst(burst)
        return len(burst.frames)

    async def replay(self, messages, group):
        """Write retained messages from history, oldest first, at the client's pace."""
        written = 0
        for offset, data_json in messages:
            written += await self.write_paced(Frame(group, offset, data_json))
        metrics.RECOVERED.inc(written)
        return written

    async def write_paced(self, frame):
        """Write a frame once the client has taken most of what is queued for it.

        Catching up (a replay, or the live messages held back meanwhile) can be far more
        than the send queue holds; waiting here keeps that from counting as a slow
        client, while a client that takes nothing for REPLAY_STALL_SECONDS still is one.
        """
        pending = self.sink.pending()
        if pending > self._limit // 2:
            lowest, progressed = pending, time.monotonic()
            while pending > self._limit // 2 and self.close_code is None:
                await asyncio.sleep(0.005)  # the transport drains in the event loop meanwhile
                pending = self.sink.pending()
                if pending < lowest:
                    lowest, progressed = pending, time.monotonic()
                elif time.monotonic() - progressed > REPLAY_STALL_SECONDS:
                    metrics.DROPPED.labels("slow_client").inc()
                    self.close(TOO_SLOW, "too slow: took nothing while catching up, resume with since")
                    return 0
        return self.write(frame)

    def send(self, text):
        if self.close_code is None:
            self.sink.send_text(text)

    def send_error(self, code, message, group=None):
        metrics.CLIENT_ERRORS.labels(code).inc()
        self.send(frames.error_frame(code, message, group))

    def close(self, code, reason=""):
        """Close from the server side; counted now, not when the client gets round to it."""
        if self.close_code is None:
            self.close_code = code
            metrics.DISCONNECTS.labels(str(code)).inc()
            self.sink.close(code, reason)

    def allow_frame(self):
        """Spend one client frame from a token bucket of GROUPCAST_CLIENT_RATE per second."""
        rate = settings.GROUPCAST_CLIENT_RATE
        now = time.monotonic()
        self._tokens = min(2 * rate, self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True
