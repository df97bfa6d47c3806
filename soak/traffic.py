"""The soak test's traffic: a steady publisher, witnesses that must see every message, and
churn clients that connect, subscribe, receive for a while and leave.

Every client keeps what it received (offset and publish number, per group); at the end
it is compared with the ledger of acknowledged publishes (see `track_verify`).
"""

import asyncio
import bisect
import collections
import http.client
import json
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from urllib.parse import urlsplit

import websockets

from service.groups import ORIGIN, parse_offset

ORIGIN_KEY = parse_offset(ORIGIN)
# How long an acknowledged message may take to reach a client that is waiting for it
# before it counts as missing (p99 publish-to-receive is meant to be < 50 ms).
SETTLE_SECONDS = 10.0
CONNECT_SECONDS = 10.0

# How churn clients leave (weights): a close handshake; unsubscribing first; a TCP reset;
# a FIN with no close frame; and a reset while their subscriptions are still being set up.
ENDINGS = {"close": 40, "unsubscribe": 12, "reset": 22, "fin": 11, "mid_join": 15}
# offset -> (offset key, publish number): one tuple per message, shared by every client
# that received it (a ten-minute soak makes close to a million deliveries).
_receipts = {}


def receipt(offset, number):
    entry = _receipts.get(offset)
    if entry is None or entry[1] != number:
        entry = (parse_offset(offset), number)
        _receipts.setdefault(offset, entry)
    return entry


class Tally(collections.Counter):
    """Counts of things that should not happen, each with the UTC times of its first few
    occurrences (to find them in the server logs)."""

    def __init__(self):
        super().__init__()
        self.first = collections.defaultdict(list)

    def note(self, *key):
        key = " ".join(map(str, key))
        self[key] += 1
        if len(self.first[key]) < 5:
            self.first[key].append(datetime.now(timezone.utc).strftime("%H:%M:%S.%f")[:-3])

    def summary(self):
        return {key: {"count": count, "first_at_utc": self.first[key]} for key, count in sorted(self.items())}


class Ledger:
    """Every publish the soak made: the acknowledged ones (HTTP 200) with their offsets,
    and those whose outcome is unknown (an error or timeout: stored or not, a client may
    legitimately receive them)."""

    def __init__(self, groups):
        self.acked = {group: [] for group in groups}  # offset keys, sorted by seal()
        self.recent = {group: collections.deque(maxlen=100) for group in groups}
        self.latest = dict.fromkeys(groups, ORIGIN_KEY)
        self.numbers = {}  # publish number -> (group, offset key)
        self.unknown = set()  # publish numbers
        self.failures = collections.Counter()  # reason -> count
        self.attempts = 0
        self.skipped = 0  # ticks with too many publishes in flight

    def acknowledge(self, group, number, offset):
        key = parse_offset(offset)
        self.acked[group].append(key)
        self.recent[group].append(offset)
        self.numbers[number] = (group, key)
        if key > self.latest[group]:
            self.latest[group] = key

    def fail(self, number, reason):
        self.unknown.add(number)
        self.failures[reason] += 1

    @property
    def acknowledged(self):
        return len(self.numbers)

    def seal(self):
        """Called once publishing has stopped: sort the offsets for range look-ups."""
        for offsets in self.acked.values():
            offsets.sort()

    def between(self, group, after, upto):
        """Acknowledged offsets of `group` in (after, upto]."""
        offsets = self.acked[group]
        return offsets[bisect.bisect_right(offsets, after):bisect.bisect_right(offsets, upto)]


class Publisher:
    """POSTs /api/v1/publish at a steady rate to random groups, from a few threads that
    keep their HTTP connections alive. A publish that gets no answer (a kept-alive
    connection the server had closed, a timeout) is retried with the same
    Idempotency-Key, as the contract allows, so its outcome is known and it is stored once."""

    ATTEMPTS = 3

    def __init__(self, *, http_url, api_key, groups, rate, ledger, rng, threads=4):
        parts = urlsplit(http_url)
        self.address = (parts.hostname, parts.port)
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.groups = groups
        self.rate = rate
        self.ledger = ledger
        self.rng = rng
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="publish")
        self.max_in_flight = 4 * threads
        self.local = threading.local()
        self.run_id = rng.getrandbits(32)
        self.retries = 0

    async def run(self, stop):
        """Publish until `stop` is set, then wait for the publishes still in flight."""
        loop = asyncio.get_running_loop()
        in_flight = set()
        due = loop.time()
        number = 0
        while not stop.is_set():
            if len(in_flight) < self.max_in_flight:
                number += 1
                group = self.rng.choice(self.groups)
                # Payloads of varying size, so the allocators see varied sizes too.
                data = {"n": number, "p": "x" * self.rng.randint(16, 1024)}
                task = asyncio.ensure_future(self._publish_one(group, number, data, f"soak-{self.run_id}-{number}"))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            else:
                self.ledger.skipped += 1
            due += 1 / self.rate
            await asyncio.sleep(max(0.0, due - loop.time()))
        if in_flight:
            await asyncio.gather(*in_flight)
        self.pool.shutdown()

    async def _publish_one(self, group, number, data, once_key):
        self.ledger.attempts += 1
        loop = asyncio.get_running_loop()
        for attempt in range(self.ATTEMPTS):
            status, reply = await loop.run_in_executor(self.pool, self._post, group, data, once_key)
            if isinstance(status, int) and status < 500:
                break
            self.retries += 1
        if status == 200:
            self.ledger.acknowledge(group, number, reply["offset"])
        else:
            self.ledger.fail(number, str(status))

    def _post(self, group, data, once_key):
        """(status, body) of one publish, in a pool thread; status is the exception's name
        when there was no HTTP answer."""
        connection = getattr(self.local, "connection", None)
        if connection is None:
            connection = self.local.connection = http.client.HTTPConnection(*self.address, timeout=10)
        body = json.dumps({"group": group, "data": data})
        try:
            connection.request("POST", "/api/v1/publish", body, self.headers | {"Idempotency-Key": once_key})
            response = connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            self.local.connection = None
            return type(error).__name__, None
        if response.status != 200:
            return response.status, None
        return 200, json.loads(payload)


class Track:
    """One client's view of one group: where its stream started for it and every message
    it received, across reconnects."""

    __slots__ = ("group", "start", "position", "received", "joins")

    def __init__(self, group):
        self.group = group
        self.start = None  # offset key: messages after it are expected
        self.position = None  # (offset, offset key) of the newest message, or of start
        self.received = []  # (offset key, publish number)
        self.joins = []  # (messages received before it, since, subscribed offset, url, UTC time)

    @property
    def since(self):
        return self.position[0] if self.position else None

    def reached(self, key):
        return self.position is not None and self.position[1] >= key


class Connection:
    """One WebSocket to a socket process; a reader task files each frame as it arrives."""

    def __init__(self, *, url, token, tracks, tally):
        self.url = url
        self.token = token
        self.tracks = tracks
        self.tally = tally
        self.socket = None
        self.reader = None
        self.joined = {}  # group -> future of its `subscribed` offset
        self.asked_since = {}  # group -> the `since` its subscribe carried
        self.pongs = collections.deque()
        self.moved = asyncio.Event()
        self.leaving = False
        self.close_code = None

    async def open(self):
        self.socket = await websockets.connect(
            f"{self.url}?token={self.token}",
            compression=None, open_timeout=CONNECT_SECONDS, close_timeout=5,
            ping_interval=None, max_size=2**20,
        )
        self.reader = asyncio.ensure_future(self._read())
        return self

    @property
    def closed(self):
        return self.reader is None or self.reader.done()

    async def send_subscribe(self, group, since=None):
        frame = {"type": "subscribe", "group": group}
        if since is not None:
            frame["since"] = since
        self.joined[group] = asyncio.get_running_loop().create_future()
        self.asked_since[group] = since
        await self.socket.send(json.dumps(frame))

    async def subscribe(self, groups, since=None):
        """Subscribe to each group (`since`: group -> offset) and wait for every `subscribed`."""
        since = since or {}
        for group in groups:
            await self.send_subscribe(group, since.get(group))
        waits = [self.joined[group] for group in groups] + [self.reader]
        deadline = time.monotonic() + SETTLE_SECONDS
        while not all(self.joined[group].done() for group in groups):
            await asyncio.wait(waits, timeout=max(0.0, deadline - time.monotonic()),
                               return_when=asyncio.FIRST_COMPLETED)
            if self.closed or time.monotonic() > deadline:
                raise ConnectionError("not subscribed: " + ("closed" if self.closed else "timeout"))
            waits = [w for w in waits if not w.done()]

    async def unsubscribe_all(self):
        """Unsubscribe from every group, then wait for a pong: the server has handled them."""
        for group in list(self.joined):
            await self.socket.send(json.dumps({"type": "unsubscribe", "group": group}))
        pong = asyncio.get_running_loop().create_future()
        self.pongs.append(pong)
        await self.socket.send('{"type":"ping"}')
        await asyncio.wait([pong, self.reader], timeout=SETTLE_SECONDS, return_when=asyncio.FIRST_COMPLETED)

    async def settle(self, targets):
        """Wait until every group has reached its target offset key; False on timeout."""
        deadline = time.monotonic() + SETTLE_SECONDS
        while not all(self.tracks[group].reached(key) for group, key in targets.items()):
            if self.closed or time.monotonic() > deadline:
                return False
            self.moved.clear()
            try:
                await asyncio.wait_for(self.moved.wait(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                pass
        return True

    async def _read(self):
        try:
            async for raw in self.socket:
                self._file(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.socket.close_code
            for joined in self.joined.values():
                if not joined.done():
                    joined.cancel()
            if not self.leaving:
                self.tally.note("server_closed", str(self.close_code))

    def _file(self, frame):
        kind = frame["type"]
        if kind == "message":
            joined = self.joined.get(frame["group"])
            if joined is None or not joined.done():
                self.tally.note("message_before_subscribed")
                return
            entry = receipt(frame["offset"], frame["data"]["n"])
            track = self.tracks[frame["group"]]
            track.received.append(entry)
            track.position = (frame["offset"], entry[0])
            self.moved.set()
        elif kind == "subscribed":
            group = frame["group"]
            joined = self.joined[group]
            track = self.tracks[group]
            if track.start is None:
                # The first subscription of this track: with `since`, everything after
                # it is owed; without, everything after the group's offset at joining.
                start = self.asked_since[group] or frame["offset"]
                track.start = parse_offset(start)
                track.position = (start, track.start)
            track.joins.append((len(track.received), self.asked_since[group], frame["offset"], self.url,
                                datetime.now(timezone.utc).strftime("%H:%M:%S.%f")[:-3]))
            joined.set_result(frame["offset"])
        elif kind == "pong":
            if self.pongs:
                self.pongs.popleft().set_result(None)
        elif kind == "error":
            self.tally.note("error", frame.get("code"))
        else:
            self.tally.note("unknown_frame", kind)

    async def close(self):
        """The close handshake (code 1000)."""
        self.leaving = True
        await self.socket.close()
        await self._finish()

    async def reset(self):
        """Drop the TCP connection with a RST: no close frame, no FIN."""
        self.leaving = True
        raw = self.socket.transport.get_extra_info("socket")
        if raw is not None:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.socket.transport.abort()
        await self._finish()

    async def fin(self):
        """Close the TCP connection (FIN) without a WebSocket close frame."""
        self.leaving = True
        self.socket.transport.close()
        await self._finish()

    async def _finish(self):
        if self.reader is not None:
            await asyncio.wait([self.reader], timeout=SETTLE_SECONDS)
            if not self.reader.done():
                self.reader.cancel()
                self.socket.transport.abort()


class Pace:
    """Spaces events at most `per_second` apart (a connect-rate bound)."""

    def __init__(self, per_second):
        self.interval = 1 / per_second
        self.next = 0.0

    async def wait(self):
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self.next)
        self.next = slot + self.interval
        await asyncio.sleep(slot - now)


class Witness:
    """A long-lived subscriber of every group that must receive each acknowledged
    publish exactly once, in order. A reconnecting witness leaves every 15-45 s
    (alternately a clean close and a TCP reset), comes back on the other socket process
    and resumes each group with `since` = the last offset it received."""

    def __init__(self, *, name, urls, process, groups, token, reconnecting, tally, rng):
        self.name = name
        self.urls = urls
        self.process = process
        self.groups = groups
        self.token = token
        self.reconnecting = reconnecting
        self.tally = tally
        self.rng = rng
        self.tracks = {group: Track(group) for group in groups}
        self.connection = None
        self.reconnects = 0
        self.server_closes = 0
        self.subscribed = asyncio.Event()

    async def run(self, stop):
        """Stay subscribed until `stop` is set; the connection is then left open (close())."""
        resets = 0
        while True:
            self.connection = Connection(url=self.urls[self.process], token=self.token,
                                         tracks=self.tracks, tally=self.tally)
            try:
                await self.connection.open()
                await self.connection.subscribe(
                    self.groups, {group: track.since for group, track in self.tracks.items()}
                )
            except (OSError, ConnectionError, websockets.InvalidHandshake, TimeoutError) as error:
                self.tally.note("witness_connect_error", f"{type(error).__name__}: {error}")
                if self.connection.socket is not None:
                    await self.connection.reset()
                await asyncio.sleep(0.5)
                continue
            self.subscribed.set()
            wake = [asyncio.ensure_future(stop.wait()), self.connection.reader]
            timeout = self.rng.uniform(15, 45) if self.reconnecting else None
            await asyncio.wait(wake, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            wake[0].cancel()
            if stop.is_set() and not self.connection.closed:
                return
            if self.connection.closed:
                self.server_closes += 1  # counted by code in the tally
                await asyncio.sleep(0.5)
            elif resets % 2:
                await self.connection.reset()
            else:
                await self.connection.close()
            resets += 1
            self.reconnects += 1
            if self.reconnecting:
                self.process = (self.process + 1) % len(self.urls)

    async def settle(self, targets):
        return await self.connection.settle(targets)

    async def close(self):
        if self.connection is not None and not self.connection.closed:
            await self.connection.close()


class ChurnRecord:
    """What one churn client did and saw, for the final check."""

    __slots__ = ("process", "ending", "lifetime", "tracks", "targets", "settled")

    def __init__(self, process, ending, lifetime, tracks):
        self.process = process
        self.ending = ending
        self.lifetime = lifetime
        self.tracks = tracks
        self.targets = None  # group -> offset key owed by the time it left (checked clients)
        self.settled = None


class Churn:
    """`slots` clients, each cycling: connect to a random socket process, subscribe to
    1-3 random groups (some with `since`), receive for a random time, leave in one of
    ENDINGS. Connects are paced; a client that stayed at least `check_after` seconds
    first waits for every message acknowledged before it leaves (then checked)."""

    def __init__(self, *, urls, groups, tokens, ledger, slots, connect_rate, check_after, tally, rng):
        self.urls = urls
        self.groups = groups
        self.tokens = tokens
        self.ledger = ledger
        self.slots = slots
        self.pace = Pace(connect_rate)
        self.check_after = check_after
        self.tally = tally
        self.rng = rng
        self.records = []
        self.cycles = collections.Counter()  # ending -> cycles completed
        self.cycles_by_process = collections.Counter()
        self.open = 0
        self.open_by_process = collections.Counter()
        self.settle_timeouts = 0

    async def run(self, stop):
        await asyncio.gather(*(self._slot(stop) for _ in range(self.slots)))

    async def _slot(self, stop):
        # Spread the slots' first connects over their first seconds.
        await asyncio.sleep(self.rng.uniform(0, 5))
        while not stop.is_set():
            await self.pace.wait()
            if stop.is_set():
                return
            try:
                await self._cycle(stop)
            except (OSError, ConnectionError, websockets.InvalidHandshake, websockets.ConnectionClosed,
                    TimeoutError) as error:
                self.tally.note("churn_error", f"{type(error).__name__}: {error}"[:80])
            await asyncio.sleep(self.rng.uniform(0, 0.5))

    def _plan(self):
        rng = self.rng
        ending = rng.choices(list(ENDINGS), weights=list(ENDINGS.values()))[0]
        if ending == "mid_join":
            lifetime = 0.0
        elif rng.random() < 0.15:
            lifetime = rng.uniform(0.05, 1.0)
        else:
            lifetime = rng.uniform(2.0, 20.0)
        groups = rng.sample(self.groups, rng.randint(1, 3))
        since = {}
        for group in groups:
            recent = self.ledger.recent[group]
            if recent and rng.random() < 0.2:
                since[group] = recent[-rng.randint(1, len(recent))]
        return rng.randrange(len(self.urls)), groups, since, lifetime, ending

    async def _cycle(self, stop):
        process, groups, since, lifetime, ending = self._plan()
        tracks = {group: Track(group) for group in groups}
        connection = Connection(url=self.urls[process], token=self.rng.choice(self.tokens),
                                tracks=tracks, tally=self.tally)
        await connection.open()
        self.open += 1
        self.open_by_process[process] += 1
        try:
            record = ChurnRecord(process, ending, lifetime, tracks)
            if ending == "mid_join":
                for group in groups:
                    await connection.send_subscribe(group, since.get(group))
                await asyncio.sleep(self.rng.uniform(0, 0.03))
                await connection.reset()
            else:
                await connection.subscribe(groups, since)
                try:
                    await asyncio.wait_for(stop.wait(), lifetime)
                except TimeoutError:
                    pass
                if lifetime >= self.check_after and not connection.closed:
                    record.targets = {group: self.ledger.latest[group] for group in groups}
                    record.settled = await connection.settle(record.targets)
                    self.settle_timeouts += not record.settled
                if ending == "unsubscribe":
                    await connection.unsubscribe_all()
                    await connection.close()
                elif ending == "close":
                    await connection.close()
                elif ending == "reset":
                    await connection.reset()
                else:
                    await connection.fin()
            self.records.append(record)
            self.cycles[ending] += 1
            self.cycles_by_process[process] += 1
        except BaseException:
            if not connection.closed:
                await connection.reset()
            raise
        finally:
            self.open -= 1
            self.open_by_process[process] -= 1


def track_verify(track, ledger, upto):
    """Compare what one track received with the ledger.

    Owed: every acknowledged offset in (start, upto] (upto None: nothing is owed, only
    what was received is checked). Returns counts: received, owed, missing, duplicated,
    out_of_order, at_or_before_start (a message the client was not owed: at or before
    its `since`, or at or before the `subscribed` offset it joined at), not_published
    (neither acknowledged nor of unknown outcome), wrong_payload (an acknowledged
    offset carrying another publish's data, or in another group).
    """
    keys = [key for key, _ in track.received]
    seen = set(keys)
    result = {
        "received": len(keys),
        "owed": 0,
        "missing": 0,
        "duplicated": len(keys) - len(seen),
        "out_of_order": sum(1 for a, b in zip(keys, keys[1:]) if b <= a),
        "at_or_before_start": sum(1 for key in keys if key <= track.start),
        "not_published": 0,
        "wrong_payload": 0,
        "missing_offsets": [],
    }
    for key, number in track.received:
        published = ledger.numbers.get(number)
        if published is None:
            result["not_published"] += number not in ledger.unknown
        elif published != (track.group, key):
            result["wrong_payload"] += 1
    if upto is not None and track.start is not None:
        owed = ledger.between(track.group, track.start, upto)
        result["owed"] = len(owed)
        missing = [key for key in owed if key not in seen]
        result["missing"] = len(missing)
        result["missing_offsets"] = [f"{m}-{s}" for m, s in missing[:20]]
    return result


def track_story(track, ledger, around=8):
    """The received offsets near the first out-of-order or duplicate one, and the track's
    joins (with how many acknowledged messages each one's replay owed: those in
    (since, subscribed]): enough to tell where a message came from."""
    keys = [key for key, _ in track.received]
    first = next((i for i, (a, b) in enumerate(zip(keys, keys[1:]), 1) if b <= a),
                 next((i for i, key in enumerate(keys) if key <= track.start), None))
    window = range(max(0, (first or 0) - around), min(len(keys), (first or 0) + around))
    return {
        "start": "%d-%d" % track.start if track.start else None,
        "joins": [{"at": at, "since": since, "subscribed": subscribed, "url": url, "utc": utc,
                   "replay_owed": len(ledger.between(track.group, parse_offset(since), parse_offset(subscribed)))
                   if since else 0}
                  for at, since, subscribed, url, utc in track.joins],
        "first_out_of_order_at": first,
        "received_near_it": [(i, "%d-%d" % keys[i], track.received[i][1]) for i in window]
        if first is not None else [],
    }
