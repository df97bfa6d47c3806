"""Soak test: minutes of connect/subscribe/disconnect churn with steady publishing against
the real local topology (Redis, gunicorn, two Daphne socket processes, a runworker).

    .venv/bin/python -m soak --minutes 10     # what `make soak` runs
    .venv/bin/python -m soak --quick          # 2 minutes, for development

It passes when, for each socket process:
- RSS is flat: the least-squares slope of RSS after the warm-up (the first half) is at most
  --rss-bound percent of its mean per 10 minutes (default 2%: ~200 kB/min for a
  ~100 MB process). An open connection costs ~24 kB, and each process cycles ~1,100
  connections a minute, so keeping one connection's state in every ~130 shows. Smaller
  leaks hide in the allocator's steps (RSS rises while the heap reaches the high-water
  mark of its busiest moments, ~1% per 10 minutes in the second half here); for those,
  tracemalloc across thousands of cycles is the instrument (see the README);
- nothing is left behind once every client is gone: no asyncio task beyond the idle
  baseline (groupcast_event_loop_tasks), the groupcast_connections,
  groupcast_subscriptions and groupcast_groups_local gauges are 0, no client socket is
  open, the open file descriptors are back near the idle baseline, Redis has no
  subscriber on any group's fan-out channel (PUBSUB NUMSUB) and as many pub/sub clients
  as before the churn;
- while only the witnesses remain, the memberships match them exactly;
and when no message was lost: every witness received every acknowledged (HTTP 200)
publish of every group exactly once and in order, across its reconnects, and every churn
client that stayed long enough received everything acknowledged between its `subscribed`
offset (or its `since`) and the moment it left.

Writes .run/soak/<time>/summary.json (figures, checks, every sample) and a figure of
RSS, connections and open files over time (also docs/soak.png, except with --quick);
prints the figures; exits 1 if a check failed, 2 if the harness itself failed.
"""

import argparse
import asyncio
import collections
import json
import math
import random
import resource
import shutil
import signal
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import psutil
import redis

from devstack import ROOT, Stack, free_port
from service.storage.clients import ASYNC_POOL_SIZE
from tests.integration.clients import token
from soak.probes import RedisPubSub, SocketProcess, redis_port
from soak.traffic import Churn, Ledger, Publisher, Tally, Witness, track_story, track_verify

RESULTS = ROOT / ".run/soak"
FIGURE = ROOT / "docs/soak.png"
FD_LIMIT = 20000
# Fast drains, so that stopping the stack at the end (or on Ctrl-C) takes a second.
STACK_ENV = {"GROUPCAST_DRAIN_SECONDS": "1"}
# Open files besides Redis connections a socket process may hold beyond its idle baseline.
FD_SLACK = 2
# Redis connections a socket process may keep once idle: the fan-out client's pool
# (history and presence scripts) grows to the most concurrent joins/leaves seen and keeps
# its connections, up to ASYNC_POOL_SIZE; plus pub/sub, the channel layer's receive
# (BZPOPMIN) and send connections, and one spare.
REDIS_CONNECTIONS_BOUND = ASYNC_POOL_SIZE + 4
DRAIN_TIMEOUT = 30.0
# asyncio tasks a socket process may have beyond its idle baseline once every client is
# gone: the channel layer's receive task (started by the first connection, then kept) and
# a batch of connection events on its way out.
TASK_SLACK = 2
# What a probe of a busy process or of Redis may raise (urllib's errors are OSErrors).
PROBE_ERRORS = (OSError, TimeoutError, psutil.Error, redis.RedisError)
# What a client must never see (see soak.traffic.track_verify).
FAULTS = ("missing", "duplicated", "out_of_order", "at_or_before_start", "not_published", "wrong_payload")


def arguments(argv):
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="churn duration (default 10)")
    parser.add_argument("--quick", action="store_true",
                        help="2 minutes, for development: the RSS slope is reported, not judged "
                             "(2 minutes are inside a fresh process's warm-up)")
    parser.add_argument("--warmup", type=float, help="minutes excluded from the RSS fit (default half of --minutes)")
    parser.add_argument("--clients", type=int, default=300, help="churn clients cycling at once (default 300)")
    parser.add_argument("--groups", type=int, default=16, help="groups (default 16)")
    parser.add_argument("--rate", type=float, default=20.0, help="publishes per second (default 20)")
    parser.add_argument("--witnesses", type=int, default=8, help="witness subscribers, half reconnecting (default 8)")
    parser.add_argument("--connect-rate", type=float, default=50.0, help="most churn connects per second (default 50)")
    parser.add_argument("--check-after", type=float, default=2.0,
                        help="churn clients staying this many seconds are checked for loss (default 2)")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="sampling interval (default 5)")
    parser.add_argument("--rss-bound", type=float, default=2.0,
                        help="largest RSS growth, in %% of the mean per 10 minutes (default 2)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    parser.add_argument("--figure", help="where to write the figure besides the run directory "
                        "(default docs/soak.png; none with --quick)")
    options = parser.parse_args(argv)
    if options.quick:
        options.minutes = 2.0
        options.warmup = 0.5 if options.warmup is None else options.warmup
    if options.warmup is None:
        # A Python process's RSS rises in steps while the heap reaches the high-water
        # mark of its busiest moments (new peaks of concurrent connections become rarer
        # as the run goes on), so the fit looks at the second half.
        options.warmup = max(0.5, options.minutes * 0.5)
    if options.seed is None:
        options.seed = int(time.time())
    if options.figure is None and not options.quick:
        options.figure = str(FIGURE)
    return options


class Run:
    """One soak run: the traffic, the samples taken meanwhile, and what the end looked like."""

    def __init__(self, *, stack, options):
        self.stack = stack
        self.options = options
        self.rng = random.Random(options.seed)
        self.groups = [f"soak.{n}" for n in range(options.groups)]
        self.urls = [stack.ws_url(i) for i in range(len(stack.socket_ports))]
        self.names = [f"socket{i}" for i in range(len(stack.socket_ports))]
        port = redis_port(stack.redis_url)
        self.probes = {
            name: SocketProcess(name=name, pid=stack.processes[name].pid,
                                port=stack.socket_ports[i], redis_port=port)
            for i, name in enumerate(self.names)
        }
        self.pubsub = RedisPubSub(stack.redis_url)
        self.ledger = Ledger(self.groups)
        self.tally = Tally()
        self.samples = []
        self.marks = {}  # phase -> seconds since the traffic started
        self.findings = {}
        self.started = None

    # Observation

    def now(self):
        return round(time.monotonic() - self.started, 2)

    def snapshot(self, *, with_sockets=True):
        """Blocking: every probe once."""
        snapshot = {
            "processes": {name: probe.sample(with_sockets=with_sockets) for name, probe in self.probes.items()},
            "redis": self.pubsub.sample(self.groups),
        }
        if with_sockets:
            for name, probe in self.probes.items():
                snapshot["processes"][name]["redis_connections"] = self.pubsub.census(probe.redis_ports())
        return snapshot

    async def sample_forever(self, stop, churn):
        while not stop.is_set():
            try:
                sample = await asyncio.to_thread(self.snapshot)
            except PROBE_ERRORS as error:
                # An overloaded process may not answer its scrape in time: noted, not fatal.
                self.tally.note("probe_failed", type(error).__name__)
                sample = None
            if sample is None:
                await asyncio.sleep(self.options.sample_seconds)
                continue
            sample["t"] = self.now()
            sample["churn_open"] = [churn.open_by_process[i] for i in range(len(self.names))]
            sample["cycles"] = sum(churn.cycles.values())
            sample["acknowledged"] = self.ledger.acknowledged
            self.samples.append(sample)
            try:
                await asyncio.wait_for(stop.wait(), self.options.sample_seconds)
            except TimeoutError:
                pass

    async def until(self, what, predicate, timeout):
        """Poll a blocking `predicate` (in a thread) until it returns a truthy value;
        returns its last value and the seconds it took (None on timeout)."""
        started = time.monotonic()
        while True:
            try:
                value = await asyncio.to_thread(predicate)
            except PROBE_ERRORS as error:
                self.tally.note("probe_failed", type(error).__name__)
                value = None
            if value:
                return value, round(time.monotonic() - started, 2)
            if time.monotonic() - started > timeout:
                self.tally.note("timeout", what)
                return value, None
            await asyncio.sleep(0.25)

    def crashed(self):
        return {name: p.returncode for name, p in self.stack.processes.items() if p.poll() is not None}

    # The run

    async def run(self):
        options = self.options
        ttl = int(min(86400, options.minutes * 60 + 3600))
        tokens = [await asyncio.to_thread(token, self.stack, self.groups, f"soak-{n}", ttl) for n in range(8)]
        self.findings["baseline"] = await asyncio.to_thread(self.baseline)

        witnesses = [
            Witness(name=f"witness{n}", urls=self.urls, process=n % len(self.urls), groups=self.groups,
                    token=tokens[0], reconnecting=n >= options.witnesses // 2, tally=self.tally,
                    rng=random.Random(self.rng.random()))
            for n in range(options.witnesses)
        ]
        churn = Churn(urls=self.urls, groups=self.groups, tokens=tokens, ledger=self.ledger,
                      slots=options.clients, connect_rate=options.connect_rate,
                      check_after=options.check_after, tally=self.tally, rng=self.rng)
        publisher = Publisher(http_url=self.stack.http_url, api_key=self.stack.api_key, groups=self.groups,
                              rate=options.rate, ledger=self.ledger, rng=random.Random(self.rng.random()))
        stop_witnesses, stop_churn, stop_publishing, stop_sampling = (asyncio.Event() for _ in range(4))

        witness_tasks = [asyncio.ensure_future(w.run(stop_witnesses)) for w in witnesses]
        await asyncio.wait_for(asyncio.gather(*(w.subscribed.wait() for w in witnesses)), 30)
        self.started = time.monotonic()
        sampler = asyncio.ensure_future(self.sample_forever(stop_sampling, churn))
        publishing = asyncio.ensure_future(publisher.run(stop_publishing))
        churning = asyncio.ensure_future(churn.run(stop_churn))
        try:
            await self.churn_phase(churning, publishing)
            stop_churn.set()
            await asyncio.wait_for(churning, 90)
            self.marks["churn_stopped"] = self.now()
            stop_publishing.set()
            await asyncio.wait_for(publishing, 30)
            self.ledger.seal()
            stop_witnesses.set()
            await asyncio.wait_for(asyncio.gather(*witness_tasks), 60)
            await self.witnesses_only(witnesses)
            for witness in witnesses:
                await witness.close()
            self.marks["clients_gone"] = self.now()
            await self.after_clients(stop_sampling, sampler)
        finally:
            for task in [sampler, publishing, churning, *witness_tasks]:
                task.cancel()
            for witness in witnesses:
                if witness.connection is not None and witness.connection.socket is not None:
                    witness.connection.socket.transport.abort()
        self.findings["crashed"] = self.crashed()
        self.findings["loss"] = self.loss(witnesses, churn)
        self.findings["churn"] = {
            "cycles": sum(churn.cycles.values()),
            "by_ending": dict(churn.cycles),
            "by_process": {self.names[i]: n for i, n in sorted(churn.cycles_by_process.items())},
            "checked_clients": sum(1 for r in churn.records if r.targets is not None),
            "settle_timeouts": churn.settle_timeouts,
        }
        self.findings["witnesses"] = {
            w.name: {"process_at_end": self.names[w.process], "reconnecting": w.reconnecting,
                     "reconnects": w.reconnects, "server_closes": w.server_closes}
            for w in witnesses
        }
        self.findings["publishing"] = {
            "attempts": self.ledger.attempts,
            "acknowledged": self.ledger.acknowledged,
            "failed_or_unknown": dict(self.ledger.failures),
            "retried": publisher.retries,
            "skipped_ticks": self.ledger.skipped,
        }
        self.findings["anomalies"] = self.tally.summary()

    def baseline(self):
        """The idle topology before any client: what the end must come back to."""
        snapshot = self.snapshot()
        snapshot["fanout_channels"] = self.pubsub.channels()
        return snapshot

    async def churn_phase(self, churning, publishing):
        """Let the traffic run for --minutes, watching that every process stays up."""
        self.marks["warmup_end"] = self.options.warmup * 60
        deadline = self.started + self.options.minutes * 60
        while time.monotonic() < deadline:
            if self.crashed():
                raise RuntimeError(f"stack process exited: {self.crashed()}")
            for task in (churning, publishing):
                if task.done():
                    task.result()  # raises what ended it
                    raise RuntimeError("traffic ended early")
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    async def witnesses_only(self, witnesses):
        """With churn over and publishing stopped: the witnesses catch up, and the
        memberships are exactly theirs."""
        targets = dict(self.ledger.latest)
        settled = await asyncio.gather(*(w.settle(targets) for w in witnesses))
        self.findings["witnesses_settled"] = all(settled)
        per_process = collections.Counter(w.process for w in witnesses)
        group_count = len(self.groups)
        expected = {
            name: {"connections": per_process[i], "subscriptions": per_process[i] * group_count,
                   "groups_local": group_count if per_process[i] else 0}
            for i, name in enumerate(self.names)
        }
        expected_numsub = sum(1 for i in range(len(self.names)) if per_process[i])
        channel_names = [f"gc:fanout:{group}" for group in self.groups]

        def observed():
            gauges = {name: {k: probe.sample(with_sockets=False)[k] for k in ("connections", "subscriptions", "groups_local")}
                      for name, probe in self.probes.items()}
            numsub = self.pubsub.numsub(channel_names)
            return {"gauges": gauges, "numsub": numsub}

        def matches():
            seen = observed()
            ok = seen["gauges"] == expected and all(n == expected_numsub for n in seen["numsub"].values())
            return seen if ok else None

        seen, took = await self.until("witness memberships", matches, 20)
        if not seen:
            seen, _ = await self.until("witness memberships observed", observed, 20)
        if not seen:
            raise RuntimeError("the socket processes did not answer their probes")
        self.findings["witnesses_only"] = {
            "expected": {"gauges": expected, "numsub_per_group": expected_numsub},
            "observed": seen,
            "numsub_total": sum(seen["numsub"].values()),
            "seconds_to_match": took,
        }

    async def after_clients(self, stop_sampling, sampler):
        """Every client is gone: wait for the gauges, Redis and the sockets to come back
        to the baseline (bounded), then take the final figures."""
        def gauges_zero():
            gauges = {name: probe.sample(with_sockets=False) for name, probe in self.probes.items()}
            return all(g[k] == 0 for g in gauges.values() for k in ("connections", "subscriptions", "groups_local"))

        _, self.findings["seconds_to_zero_gauges"] = await self.until("gauges zero", gauges_zero, DRAIN_TIMEOUT)
        baseline = self.findings["baseline"]

        def redis_back():
            return (self.pubsub.channels() == baseline["fanout_channels"]
                    and self.pubsub.pubsub_clients() == baseline["redis"]["pubsub_clients"])

        _, self.findings["seconds_to_redis_baseline"] = await self.until("redis baseline", redis_back, DRAIN_TIMEOUT)
        # A few more samples of the idle processes for the figure, then the sampler stops
        # so that its own /metrics connections are not counted as clients.
        await asyncio.sleep(2 * self.options.sample_seconds)
        stop_sampling.set()
        await sampler

        def no_client_sockets():
            return all(probe.sockets()["clients"] == 0 for probe in self.probes.values())

        await self.until("client sockets closed", no_client_sockets, 10)

        def final():
            end = self.snapshot()
            end["fanout_channels"] = self.pubsub.channels()
            end["group_numsub"] = self.pubsub.numsub([f"gc:fanout:{group}" for group in self.groups])
            end["counters"] = {name: probe.counters() for name, probe in self.probes.items()}
            return end

        end, _ = await self.until("final snapshot", final, 30)
        if not end:
            raise RuntimeError("the socket processes did not answer their probes")
        end["t"] = self.now()
        self.findings["end"] = end

    # Verdicts

    def loss(self, witnesses, churn):
        """What the clients received against what was acknowledged."""
        def verify(tracks_and_limits):
            totals = collections.Counter()
            examples = []
            for owner, track, upto in tracks_and_limits:
                if track.start is None:
                    continue  # never subscribed (a mid-join reset): nothing owed or received
                result = track_verify(track, self.ledger, upto)
                missing = result.pop("missing_offsets")
                totals.update(result)
                if any(result[k] for k in FAULTS) and len(examples) < 20:
                    examples.append({"client": owner, "group": track.group, **result,
                                     "missing_offsets": missing, **track_story(track, self.ledger)})
            return dict(totals), examples

        witness_totals, witness_examples = verify(
            (w.name, track, self.ledger.latest[group]) for w in witnesses for group, track in w.tracks.items()
        )
        churn_totals, churn_examples = verify(
            (f"churn{n}:{record.ending}:{self.names[record.process]}", track,
             record.targets[group] if record.targets is not None else None)
            for n, record in enumerate(churn.records) for group, track in record.tracks.items()
        )
        return {"witnesses": witness_totals, "witness_examples": witness_examples,
                "churn": churn_totals, "churn_examples": churn_examples}

    def rss_fits(self):
        start, end = self.marks["warmup_end"], self.marks["churn_stopped"]
        fits = {}
        for name in self.names:
            points = [(s["t"] / 60, s["processes"][name]["rss"] / 1024) for s in self.samples if start <= s["t"] <= end]
            fits[name] = least_squares(points)
            if fits[name]:
                fit = fits[name]
                fit["bound_kb_per_min"] = round(self.options.rss_bound / 100 * fit["mean_kb"] / 10, 1)
                cycles = [s["cycles"] for s in self.samples if start <= s["t"] <= end]
                share = self.findings["churn"]["by_process"].get(name, 0) / max(1, self.findings["churn"]["cycles"])
                per_minute = (cycles[-1] - cycles[0]) * share / max(1e-9, (points[-1][0] - points[0][0]))
                fit["cycles_per_min"] = round(per_minute, 1)
                fit["bytes_per_cycle"] = round(fit["slope_kb_per_min"] * 1024 / per_minute, 1) if per_minute else None
        return fits

    def checks(self):
        findings = self.findings
        baseline, end = findings["baseline"], findings["end"]
        results = []

        def check(name, ok, detail, judged=True):
            results.append({"check": name, "ok": bool(ok), "judged": judged, "detail": detail})

        check("processes stayed up", not findings["crashed"], findings["crashed"] or "all running")
        for name, fit in findings["rss"].items():
            if fit is None:
                check(f"{name} RSS flat", False, "too few samples after the warm-up")
                continue
            check(f"{name} RSS flat", fit["slope_kb_per_min"] <= fit["bound_kb_per_min"],
                  f"slope {fit['slope_kb_per_min']:+.1f} ± {fit['stderr_kb_per_min']:.1f} kB/min, "
                  f"bound {fit['bound_kb_per_min']:.1f} kB/min ({self.options.rss_bound:g}% of "
                  f"{fit['mean_kb'] / 1024:.1f} MB per 10 min)", judged=not self.options.quick)
        for name in self.names:
            gauges = {k: end["processes"][name][k] for k in ("connections", "subscriptions", "groups_local")}
            check(f"{name} gauges back to 0", not any(gauges.values()), gauges)
        for name in self.names:
            before, after = baseline["processes"][name]["event_loop_tasks"], end["processes"][name]["event_loop_tasks"]
            check(f"{name} no task left behind", after <= before + TASK_SLACK,
                  f"asyncio tasks {before} -> {after} (slack {TASK_SLACK}: the layer's receive task, a batch of events)")
        for name in self.names:
            before, after = baseline["processes"][name], end["processes"][name]
            clients = after["sockets"].get("clients", 0)
            redis_before, redis_after = before["sockets"].get("redis", 0), after["sockets"].get("redis", 0)
            peak = max(s["processes"][name]["sockets"].get("redis", 0) for s in self.samples)
            others_before, others_after = before["fds"] - redis_before, after["fds"] - redis_after
            check(f"{name} open files back near baseline",
                  clients == 0 and others_after <= others_before + FD_SLACK
                  and redis_after <= REDIS_CONNECTIONS_BOUND,
                  f"fds {before['fds']} -> {after['fds']}: client sockets {clients}; other than Redis "
                  f"{others_before} -> {others_after} (slack {FD_SLACK}); Redis connections {redis_before} -> "
                  f"{redis_after} (peak {peak}, bound {REDIS_CONNECTIONS_BOUND}: pools that keep what they grew to)")
        leaked = {name: n for name, n in end["group_numsub"].items() if n}
        check("no Redis subscription left on any group channel", not leaked and
              end["fanout_channels"] == baseline["fanout_channels"],
              f"group channels with subscribers: {leaked or 'none'}; fan-out channels "
              f"{len(baseline['fanout_channels'])} -> {len(end['fanout_channels'])}")
        check("Redis pub/sub clients back to baseline",
              end["redis"]["pubsub_clients"] == baseline["redis"]["pubsub_clients"],
              f"{baseline['redis']['pubsub_clients']} -> {end['redis']['pubsub_clients']}")
        only = findings["witnesses_only"]
        check("memberships match the witnesses once churn is over", only["seconds_to_match"] is not None,
              {"expected": only["expected"], "observed_gauges": only["observed"]["gauges"],
               "numsub_total": only["numsub_total"]})
        for who in ("witnesses", "churn"):
            totals = findings["loss"][who]
            bad = {k: totals.get(k, 0) for k in FAULTS}
            check(f"{who}: every acknowledged message exactly once, in order", not any(bad.values()),
                  f"owed {totals.get('owed', 0)}, received {totals.get('received', 0)}, " +
                  ", ".join(f"{k} {v}" for k, v in bad.items()))
        check("witnesses caught up", findings["witnesses_settled"], findings["witnesses_settled"])
        return results


def least_squares(points):
    """Slope (kB/min), its standard error, and the mean of (minutes, kB) points."""
    n = len(points)
    if n < 3:
        return None
    mean_t = sum(t for t, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    sxx = sum((t - mean_t) ** 2 for t, _ in points)
    slope = sum((t - mean_t) * (y - mean_y) for t, y in points) / sxx
    intercept = mean_y - slope * mean_t
    residual = sum((y - intercept - slope * t) ** 2 for t, y in points)
    return {
        "slope_kb_per_min": round(slope, 2),
        "stderr_kb_per_min": round(math.sqrt(residual / (n - 2) / sxx), 2),
        "intercept_kb": round(intercept, 1),
        "mean_kb": round(mean_y, 1),
        "first_kb": round(points[0][1], 1),
        "last_kb": round(points[-1][1], 1),
        "samples": n,
    }


def figure(run, paths):
    """RSS, connections and open files of each socket process over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = run.samples
    minutes = [s["t"] / 60 for s in samples]
    warmup_end, churn_stopped = run.marks["warmup_end"] / 60, run.marks["churn_stopped"] / 60
    fig, axes = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    rss_axis, conn_axis, fd_axis = axes
    for index, name in enumerate(run.names):
        colour = f"C{index}"
        rss_axis.plot(minutes, [s["processes"][name]["rss"] / 2**20 for s in samples], color=colour, label=name)
        fit = run.findings["rss"].get(name)
        if fit:
            line = [(fit["intercept_kb"] + fit["slope_kb_per_min"] * t) / 1024 for t in (warmup_end, churn_stopped)]
            rss_axis.plot([warmup_end, churn_stopped], line, "--", color=colour, linewidth=1,
                          label=f"{name} fit: {fit['slope_kb_per_min']:+.1f} kB/min "
                                f"(bound {fit['bound_kb_per_min']:.0f} kB/min)")
        conn_axis.plot(minutes, [s["processes"][name]["connections"] for s in samples], color=colour,
                       label=f"{name} connections")
        conn_axis.plot(minutes, [s["processes"][name]["subscriptions"] for s in samples], ":", color=colour,
                       label=f"{name} subscriptions")
        fd_axis.plot(minutes, [s["processes"][name]["fds"] for s in samples], color=colour,
                     label=f"{name} open files")
    fd_axis.plot(minutes, [s["redis"]["group_numsub"] for s in samples], color="C2",
                 label="Redis: NUMSUB summed over the group channels")
    for axis in axes:
        axis.axvspan(minutes[0], warmup_end, color="grey", alpha=0.12)
        axis.axvline(churn_stopped, color="grey", linestyle="--", linewidth=0.8)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="center left", framealpha=0.9)
    rss_axis.set_ylabel("RSS, MB")
    rss_axis.set_title("socket process RSS (grey: warm-up, not fitted; dashed: least-squares fit)", fontsize=10)
    conn_axis.set_ylabel("count")
    conn_axis.set_title("WebSocket connections and subscriptions (groupcast gauges)", fontsize=10)
    fd_axis.set_ylabel("count")
    fd_axis.set_title("open file descriptors; Redis subscribers of the group channels", fontsize=10)
    fd_axis.set_xlabel("minutes (dashed line: churn stops, then every client leaves)")
    churn = run.findings["churn"]
    fig.suptitle(f"groupcast soak: {run.options.minutes:g} min, {run.options.clients} churn clients at once "
                 f"({churn['cycles']} connections cycled), {run.options.witnesses} witnesses, "
                 f"{run.options.rate:g} publishes/s, 2 socket processes", fontsize=11)
    fig.tight_layout()
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=80)
    plt.close(fig)


def report(run, checks):
    """The figures, as printed at the end."""
    f = run.findings
    baseline, end = f["baseline"], f["end"]
    lines = [f"groupcast soak, {run.options.minutes:g} min (warm-up {run.options.warmup:g}), seed {run.options.seed}"]
    lines.append("RSS (after warm-up):")
    for name, fit in f["rss"].items():
        if fit:
            lines.append(f"  {name}: slope {fit['slope_kb_per_min']:+.1f} ± {fit['stderr_kb_per_min']:.1f} kB/min "
                         f"(bound {fit['bound_kb_per_min']:.1f}), mean {fit['mean_kb'] / 1024:.1f} MB, "
                         f"{fit['first_kb'] / 1024:.1f} -> {fit['last_kb'] / 1024:.1f} MB, "
                         f"{fit['cycles_per_min']:.0f} cycles/min, {fit['bytes_per_cycle']} B/cycle")
    only = f["witnesses_only"]
    lines.append(f"Redis NUMSUB of group channels: before {baseline['redis']['group_numsub']}, "
                 f"witnesses only {only['numsub_total']} (expected "
                 f"{only['expected']['numsub_per_group'] * len(run.groups)}), "
                 f"after {sum(end['group_numsub'].values())}; fan-out channels "
                 f"{len(baseline['fanout_channels'])} -> {len(end['fanout_channels'])}; pub/sub clients "
                 f"{baseline['redis']['pubsub_clients']} -> {end['redis']['pubsub_clients']}")
    for name in run.names:
        b, e = baseline["processes"][name], end["processes"][name]
        lines.append(f"{name}: connections {e['connections']}, subscriptions {e['subscriptions']}, "
                     f"groups_local {e['groups_local']}; fds {b['fds']} -> {e['fds']}; sockets {e['sockets']}; "
                     f"RSS {b['rss'] / 2**20:.1f} -> {e['rss'] / 2**20:.1f} MB; CPU {e['cpu_seconds']:.0f} s")
    pub = f["publishing"]
    lines.append(f"publishes: {pub['attempts']} attempted, {pub['acknowledged']} acknowledged, "
                 f"failed/unknown {pub['failed_or_unknown'] or 0}, retried {pub['retried']} (same Idempotency-Key), "
                 f"skipped ticks {pub['skipped_ticks']}")
    for who in ("witnesses", "churn"):
        t = f["loss"][who]
        lines.append(f"{who}: owed {t.get('owed', 0)}, delivered {t.get('received', 0)}, lost {t.get('missing', 0)}, "
                     f"duplicated {t.get('duplicated', 0)}, out of order {t.get('out_of_order', 0)}, "
                     f"at or before start {t.get('at_or_before_start', 0)}, not published {t.get('not_published', 0)}, "
                     f"wrong payload {t.get('wrong_payload', 0)}")
    churn = f["churn"]
    lines.append(f"clients cycled: {churn['cycles']} {churn['by_ending']}, checked {churn['checked_clients']}, "
                 f"witness reconnects {sum(w['reconnects'] for w in f['witnesses'].values())}")
    lines.append("anomalies: " + ("; ".join(f"{key} x{a['count']} (first at {a['first_at_utc'][0]} UTC)"
                                            for key, a in f["anomalies"].items()) or "none"))
    for name, counters in end["counters"].items():
        lines.append(f"{name} counters: " + "; ".join(
            f"{metric.removeprefix('groupcast_')} " + ", ".join(f"{k or 'total'}={v:g}" for k, v in values.items() if v)
            for metric, values in counters.items()))
    lines.append("checks:")
    for item in checks:
        verdict = ("PASS" if item["ok"] else "FAIL") if item["judged"] else "INFO"
        lines.append(f"  [{verdict}] {item['check']}: {item['detail']}")
    return "\n".join(lines)


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, FD_LIMIT) if hard != resource.RLIM_INFINITY else FD_LIMIT
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    options = arguments(argv if argv is not None else sys.argv[1:])
    raise_fd_limit()  # before the stack starts: its processes inherit it
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    directory = RESULTS / stamp
    stack = Stack(socket_ports=[free_port(), free_port()], env=STACK_ENV, workdir=directory / "stack")
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    run = None
    try:
        print(f"soak: {options.minutes:g} min, logs and results in {directory.relative_to(ROOT)}", flush=True)
        stack.start()
        run = Run(stack=stack, options=options)
        asyncio.run(run.run())
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        if run is not None:
            print(f"soak: anomalies so far {dict(run.tally)}", file=sys.stderr)
        for name in stack.processes:
            print(f"--- {name} log (tail)\n{stack.log(name)[-1500:]}", file=sys.stderr)
        return 2
    finally:
        stack.stop()
        shutil.rmtree(directory / "stack" / "redis", ignore_errors=True)  # the AOF; logs stay
    run.findings["rss"] = run.rss_fits()
    checks = run.checks()
    summary = {
        "options": vars(options),
        "marks": run.marks,
        "findings": run.findings,
        "checks": checks,
        "passed": all(c["ok"] for c in checks if c["judged"]),
        "samples": run.samples,
    }
    (directory / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    figures = [directory / "soak.png"] + ([Path(options.figure)] if options.figure else [])
    figure(run, figures)
    print(report(run, checks))
    print(f"summary: {(directory / 'summary.json').relative_to(ROOT)}; figure: "
          + ", ".join(str(p.resolve().relative_to(ROOT)) if p.resolve().is_relative_to(ROOT) else str(p) for p in figures))
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
