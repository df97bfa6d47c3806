"""Publish latency while slow HTTP clients hold connections to the http role.

    python -m bench.slow_http                 through the buffering front (what clients reach)
    python -m bench.slow_http --direct        straight to gunicorn (the front's absence)
    python -m bench.slow_http --trickle 300 --short-body 50 --seconds 20

Starts a devstack.Stack, measures legitimate publishes (a new connection each, 20 a
second) unloaded, then again while `--trickle` connections send a request header one
byte every 3 s and `--short-body` connections announce more body than they send; each
slow client reconnects as soon as it is closed, so the load lasts the whole measurement.
The slow clients run in a process of their own (`--attack`), so that their own work
cannot delay the measuring client. tests/integration/test_slow_http.py uses the same clients.
"""

import argparse
import asyncio
import json
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

TRICKLE_INTERVAL = 3.0
PUBLISH_TIMEOUT = 10.0


@dataclass
class SlowClients:
    """What the slow clients saw: how long the server held each of them, and its answers."""

    held: list = field(default_factory=list)  # seconds from connect to close, per connection
    answers: list = field(default_factory=list)  # first line of any answer before the close
    open: int = 0

    def closed(self, seconds, answer):
        self.held.append(seconds)
        if answer:
            self.answers.append(answer.split(b"\r\n", 1)[0].decode(errors="replace"))


async def _hold(host, port, first, trickle, record, stop, interval):
    """One connection: send `first`, then `trickle` a byte every `interval` s (nothing
    more once it is used up) until the server closes it; record how long that took."""
    started = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PUBLISH_TIMEOUT)
    except (OSError, TimeoutError):
        await asyncio.sleep(0.1)  # refused: try again (the caller loops)
        return
    record.open += 1
    answer = b""
    try:
        writer.write(first)
        position = 0
        while not stop.is_set():
            try:
                chunk = await asyncio.wait_for(reader.read(4096), interval)
            except TimeoutError:
                if position < len(trickle):
                    writer.write(trickle[position:position + 1])
                    position += 1
                continue
            if not chunk:
                record.closed(time.monotonic() - started, answer)
                return
            answer += chunk
    except OSError:
        record.closed(time.monotonic() - started, answer)
    finally:
        record.open -= 1
        writer.close()


async def trickle_headers(host, port, count, record, stop, interval=TRICKLE_INTERVAL):
    """`count` connections sending a publish request's header a byte every `interval` s."""
    first = b"P"
    trickle = (b"OST /api/v1/publish HTTP/1.1\r\nHost: groupcast\r\nX-Slow: " + b"x" * 4000)

    async def client():
        await asyncio.sleep(random.uniform(0, interval))  # independent clients, not in lockstep
        while not stop.is_set():
            await _hold(host, port, first, trickle, record, stop, interval)

    await asyncio.gather(*(client() for _ in range(count)))


async def short_bodies(host, port, count, record, stop, key="x"):
    """`count` connections whose Content-Length (1000) exceeds the 10 bytes they send."""
    first = (b"POST /api/v1/publish HTTP/1.1\r\nHost: groupcast\r\n"
             b"Authorization: Bearer " + key.encode() + b"\r\n"
             b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b'{"group": ')

    async def client():
        await asyncio.sleep(random.uniform(0, TRICKLE_INTERVAL))
        while not stop.is_set():
            await _hold(host, port, first, b"", record, stop, TRICKLE_INTERVAL)

    await asyncio.gather(*(client() for _ in range(count)))


async def publish_once(host, port, key, group="slow-http"):
    """(status, seconds) of one publish on a new connection; status None when it failed
    or took longer than PUBLISH_TIMEOUT."""
    body = json.dumps({"group": group, "data": {"at": time.time()}}).encode()
    request = (f"POST /api/v1/publish HTTP/1.1\r\nHost: groupcast\r\nConnection: close\r\n"
               f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    started = time.monotonic()
    try:
        async with asyncio.timeout(PUBLISH_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(request)
                status_line = await reader.readline()
                await reader.read()  # Connection: close, so the answer ends with the connection
            finally:
                writer.close()
        status = int(status_line.split()[1])
    except (OSError, TimeoutError, IndexError, ValueError):
        status = None
    return status, time.monotonic() - started


async def publish_latencies(host, port, key, seconds, rate=20.0):
    """[(status, seconds)] of publishes started `rate` times a second for `seconds`,
    each on its own connection, concurrently when the server is slow."""
    tasks = []
    started = time.monotonic()
    for n in range(int(seconds * rate)):
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        tasks.append(asyncio.ensure_future(publish_once(host, port, key)))
    return await asyncio.gather(*tasks)


def percentile(values, fraction):
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(results):
    """{"publishes", "ok", "failed", "p50_ms", "p99_ms", "max_ms"} of publish results."""
    ok = [seconds for status, seconds in results if status == 200]
    return {
        "publishes": len(results),
        "ok": len(ok),
        "failed": len(results) - len(ok),
        "p50_ms": round(1000 * percentile(ok, 0.50), 1),
        "p99_ms": round(1000 * percentile(ok, 0.99), 1),
        "max_ms": round(1000 * max(ok, default=float("nan")), 1),
    }


async def attack(host, port, key, trickle, short_body):
    """The slow clients, until standard input closes. Prints one JSON line once every one
    of them holds a connection, and one at the end: what each kind saw."""
    stop = asyncio.Event()
    slow = {"trickle": SlowClients(), "short_body": SlowClients()}
    clients = [
        asyncio.ensure_future(trickle_headers(host, port, trickle, slow["trickle"], stop)),
        asyncio.ensure_future(short_bodies(host, port, short_body, slow["short_body"], stop, key)),
    ]
    while sum(record.open for record in slow.values()) < trickle + short_body:
        await asyncio.sleep(0.05)
    print(json.dumps({"connected": trickle + short_body}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    stop.set()
    await asyncio.gather(*clients)
    print(json.dumps({kind: asdict(record) for kind, record in slow.items()}), flush=True)


async def under_load(host, port, key, *, trickle, short_body, seconds):
    """Publish latency while the slow clients run (in a process of their own), and what
    each kind of them saw: (results, {"trickle": SlowClients, "short_body": SlowClients})."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.slow_http", "--attack", f"{host}:{port}",
        "--trickle", str(trickle), "--short-body", str(short_body),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "SLOW_HTTP_KEY": key},
    )
    try:
        connected = await asyncio.wait_for(process.stdout.readline(), 30)
        if not connected:
            raise RuntimeError("the slow clients' process exited before connecting")
        results = await publish_latencies(host, port, key, seconds)
        process.stdin.close()
        seen = json.loads(await asyncio.wait_for(process.stdout.readline(), 30))
    finally:
        if process.returncode is None:
            process.stdin.close()
            await asyncio.wait_for(process.wait(), 30)
    return results, {kind: SlowClients(**record) for kind, record in seen.items()}


def main():
    from devstack import Stack

    parser = argparse.ArgumentParser(prog="python -m bench.slow_http", description=__doc__.split("\n")[0])
    parser.add_argument("--direct", action="store_true", help="target gunicorn, not the front")
    parser.add_argument("--attack", metavar="HOST:PORT",
                        help="only run the slow clients against HOST:PORT, until stdin closes (key: $SLOW_HTTP_KEY)")
    parser.add_argument("--trickle", type=int, action="append",
                        help="slow-header connections (repeat for several runs; default 8, 32, 300)")
    parser.add_argument("--short-body", type=int, default=50, help="short-body connections with the largest run")
    parser.add_argument("--seconds", type=float, default=10.0, help="publishing time per run")
    args = parser.parse_args()
    counts = args.trickle or [8, 32, 300]
    if args.attack:
        host, _, port = args.attack.rpartition(":")
        asyncio.run(attack(host, int(port), os.environ.get("SLOW_HTTP_KEY", "x"), counts[0], args.short_body))
        return

    stack = Stack().start()
    try:
        port = stack.gunicorn_port if args.direct else stack.http_port
        target = "gunicorn" if args.direct else "front"
        asyncio.run(publish_latencies("127.0.0.1", port, stack.api_key, 1.0))  # warm up
        baseline = asyncio.run(publish_latencies("127.0.0.1", port, stack.api_key, args.seconds))
        print(json.dumps({"target": target, "trickle": 0, "short_body": 0, **summary(baseline)}), flush=True)
        for count in counts:
            short = args.short_body if count == max(counts) else 0
            results, slow = asyncio.run(under_load("127.0.0.1", port, stack.api_key, trickle=count,
                                                   short_body=short, seconds=args.seconds))
            held = sorted(slow["trickle"].held + slow["short_body"].held)
            print(json.dumps({
                "target": target, "trickle": count, "short_body": short, **summary(results),
                "slow_closed": len(held), "slow_held_max_s": round(held[-1], 1) if held else None,
            }), flush=True)
    finally:
        stack.stop()


if __name__ == "__main__":
    main()
