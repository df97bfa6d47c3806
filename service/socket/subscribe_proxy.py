"""The subscribe proxy: the application's backend has a say on each subscribe.

With GROUPCAST_SUBSCRIBE_PROXY_URL set, a subscribe the token allows is accepted only once
that URL, sent `{"sub", "group", "info"}` (signed like the webhook: service/signing.py),
answers 2xx. A 403 refuses it (error frame `forbidden`). Any other answer, a failed
connection, or no answer within GROUPCAST_SUBSCRIBE_PROXY_TIMEOUT is `unavailable`: the
client may try again. Allowed and refused are remembered for the connection, per group, so
a client that leaves a group and comes back is not asked about again; unavailable is not.

The request is HTTP/1.1 written on asyncio streams rather than a client in a thread: the
deadline then covers all of it (waiting for one of the process's
GROUPCAST_SUBSCRIBE_PROXY_CONCURRENCY slots, connecting, sending, the status line), no
thread pool is shared, and a backend that trickles its answer cannot hold a subscribe past
the deadline. Only the status line is read.
"""

import asyncio
import json
import logging
import ssl
import time
from urllib.parse import urlsplit

from django.conf import settings

from service import metrics
from service.signing import new_message_id, signed_headers

log = logging.getLogger(__name__)

ALLOWED = "allowed"
FORBIDDEN = "forbidden"
UNAVAILABLE = "unavailable"
# Answers remembered per connection: more distinct groups than this (a client probing a
# `room.*` token) push the oldest out instead of growing the connection without bound.
REMEMBERED_MAX = 256
# While the backend is down every subscribe fails; one warning per this many seconds says so.
WARN_EVERY_SECONDS = 10.0


def subscribe_proxy_from_settings():
    """This process's proxy, or None when GROUPCAST_SUBSCRIBE_PROXY_URL is unset."""
    if not settings.GROUPCAST_SUBSCRIBE_PROXY_URL:
        return None
    return SubscribeProxy(
        settings.GROUPCAST_SUBSCRIBE_PROXY_URL,
        timeout=settings.GROUPCAST_SUBSCRIBE_PROXY_TIMEOUT,
        concurrency=settings.GROUPCAST_SUBSCRIBE_PROXY_CONCURRENCY,
    )


class SubscribeProxy:
    def __init__(self, url, *, timeout, concurrency):
        parts = urlsplit(url)
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.authority = parts.netloc.rpartition("@")[2]
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.timeout = timeout
        self.slots = asyncio.Semaphore(concurrency)
        self._warned_at = float("-inf")

    async def ask(self, subscriber, group):
        """ALLOWED, FORBIDDEN or UNAVAILABLE for `subscriber` joining `group`."""
        remembered = subscriber.proxy_answers
        if remembered is not None and group in remembered:
            return remembered[group]
        answer = await self._ask(subscriber.sub, group, subscriber.claims.info)
        if answer != UNAVAILABLE:
            if remembered is None:
                remembered = subscriber.proxy_answers = {}
            elif len(remembered) >= REMEMBERED_MAX:
                del remembered[next(iter(remembered))]
            remembered[group] = answer
        return answer

    async def _ask(self, sub, group, info):
        body = json.dumps({"sub": sub, "group": group, "info": info}, separators=(",", ":")).encode()
        try:
            async with asyncio.timeout(self.timeout):
                async with self.slots:
                    status = await self._post(body)
        except TimeoutError:  # (an OSError too: it comes first)
            outcome, problem = "timeout", f"no answer within {self.timeout:g} s"
        except (OSError, ValueError) as error:
            outcome, problem = "error", f"{type(error).__name__}: {error}"
        else:
            if 200 <= status < 300:
                outcome = ALLOWED
            elif status == 403:
                outcome = FORBIDDEN
            else:
                outcome, problem = "error", f"it answered {status}"
        metrics.SUBSCRIBE_PROXY.labels(outcome).inc()
        if outcome in (ALLOWED, FORBIDDEN):
            return outcome
        self._warn(problem)
        return UNAVAILABLE

    async def _post(self, body):
        """POST `body`, signed; the answer's status code."""
        head = [
            f"POST {self.target} HTTP/1.1",
            f"Host: {self.authority}",
            "User-Agent: groupcast",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            "Connection: close",
            *(f"{name}: {value}" for name, value in signed_headers(body, new_message_id()).items()),
        ]
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.tls)
        try:
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            line = await reader.readline()
        finally:
            writer.close()
        return status_code(line)

    def _warn(self, problem):
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_SECONDS:
            self._warned_at = now
            log.warning("subscribe proxy unavailable (%s): subscribes are answered unavailable", problem)


def status_code(line):
    """The status code of an HTTP/1.x status line (bytes); ValueError for anything else."""
    version, _, rest = line.partition(b" ")
    code = rest[:3]
    if not version.startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ValueError("not an HTTP answer")
    return int(code)
