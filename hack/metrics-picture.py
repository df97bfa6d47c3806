#!/usr/bin/env python3
"""Renders docs/dashboard.png: the dashboard's main panels for a short real run.

Starts the local topology (two socket processes) and a real Prometheus, drives a minute of
traffic (200 subscribers, a steady publish stream, a slow client, a bulk job), then draws
the panels from Prometheus range queries with the dashboard's own PromQL. Run by
`make metrics-picture`.
"""

import asyncio
import json
import re
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from devstack import Stack, free_port  # noqa: E402
from tests.integration.clients import Subscriber, api, publish, token  # noqa: E402
from tests.integration.prometheus import DASHBOARD, Prometheus  # noqa: E402

OUT = ROOT / "docs/dashboard.png"
RUN_SECONDS = 60
SHOWN = [
    "Publishes/s",
    "Deliveries/s",
    "Connections per socket pod",
    "Delivery lag (publish to write)",
    "Drops by reason (recoverable by offset)",
    "Disconnects by close code",
]


async def traffic(stack):
    tok = token(stack, ["live", "slow"])
    clients = [await Subscriber(stack.ws_url(i % 2), tok).connect() for i in range(200)]
    for client in clients:
        await client.subscribe("live")
    readers = [asyncio.ensure_future(_drain(c)) for c in clients]
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", stack.socket_ports[0]))
    slow = await Subscriber(stack.ws_url(0), tok, sock=raw, max_queue=1).connect()
    await slow.subscribe("slow")
    api(stack, "POST", "/api/v1/jobs", {"groups": [f"bulk.{n}" for n in range(100)], "data": 1, "rate": 5})
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < RUN_SECONDS:
        await asyncio.to_thread(publish, stack, "live", {"n": n})
        if time.monotonic() - started < 20:
            await asyncio.to_thread(publish, stack, "slow", "x" * 50000)
        n += 1
        await asyncio.sleep(0.05)  # ~20 publishes/s
    for reader in readers:
        reader.cancel()
    for client in clients:
        await client.close()


async def _drain(client):
    while True:
        await client.frame(timeout=None)


def main():
    stack = Stack(socket_ports=[free_port(), free_port()], env={"GROUPCAST_SEND_QUEUE_BYTES": "65536"})
    prometheus = None
    try:
        stack.start()
        prometheus = Prometheus(stack).start()
        start = time.time()
        asyncio.run(traffic(stack))
        time.sleep(3)  # let the last scrapes land
        end = time.time()
        panels = {p["title"]: p["targets"] for p in json.loads(DASHBOARD.read_text())["panels"]}
        figure, axes = plt.subplots(2, 3, figsize=(15, 7.5))
        for axis, title in zip(axes.flat, SHOWN):
            for target in panels[title]:
                expr = (target["expr"].replace("$__rate_interval", "10s")
                        .replace('"$namespace"', '".*"').replace('"$pod"', '".*"'))
                for series in prometheus.query_range(expr, start, end, "2s"):
                    points = [(float(t) - start, float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf")]
                    if points and any(v for _, v in points):
                        labels = series["metric"]
                        label = re.sub(r"{{(\w+)}}", lambda m, labels=labels: labels.get(m[1], ""), target["legendFormat"])
                        axis.plot(*zip(*points), label=label)
            axis.set_title(title, fontsize=10)
            axis.set_xlabel("seconds")
            axis.grid(alpha=0.3)
            if axis.lines:
                axis.legend(fontsize=7)
        figure.suptitle("groupcast dashboard: 200 subscribers on 2 socket processes, 20 publishes/s, one slow client")
        figure.tight_layout()
        OUT.parent.mkdir(exist_ok=True)
        figure.savefig(OUT, dpi=80)
        print(f"wrote {OUT.relative_to(ROOT)}")
    finally:
        if prometheus:
            prometheus.stop()
        stack.stop()


if __name__ == "__main__":
    main()
