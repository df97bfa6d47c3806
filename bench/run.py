"""One benchmark run: every system, one at a time, through every scenario, against one
Redis and one load generator."""

import itertools
import time
import traceback

import psutil

from bench.accounting import ProcessTrees, delta, machine_busy_seconds
from bench.load_generator import LoadGenerator

CONNECT_CONCURRENCY = 64
CONNECT_TIMEOUT = 30
PUBLISH_CONCURRENCY = 16
PAYLOAD_BYTES = 64
# After the last publish of a phase: wait for deliveries still on their way, at most
# DRAIN seconds and no longer than STALL seconds without any arriving. Later arrivals
# are reported as `late_from_earlier_phases` by the next phase.
DRAIN = 5
STALL = 2
# After a phase that did not drain: wait (at most QUIESCE_TIMEOUT) until its late
# deliveries stop for QUIET seconds, so its backlog does not count against the next one.
QUIET = 1.5
QUIESCE_TIMEOUT = 20
# A closed-loop message not fully delivered by then leaves the window (and counts as lost
# unless its missing deliveries belong to clients closed with 4008).
MESSAGE_TIMEOUT = 5
SETTLE = 1.0
# Saturation search (see README): every doubling of the window from the scenario's first
# one up to MAX_IN_FLIGHT deliveries (at most SEARCH_STEPS steps); the saturation point is
# the fastest step with p99 within LATENCY_CAP_MS and nothing lost. The search ends early
# only once OVER_CAP_IN_A_ROW steps in a row were over the cap, or a step lost messages for
# good (not even arriving after the drain) or had clients closed (larger windows only add
# to the backlog).
LATENCY_CAP_MS = 250
OVER_CAP_IN_A_ROW = 2
SEARCH_STEPS = 7
MAX_IN_FLIGHT = 64000


def group_names(scenario):
    return [f"bench-{index}" for index in range(scenario.groups)]


class ScenarioRun:
    """One system through one scenario on one Redis topology (bench/topologies.py):
    start them, connect, run the phases, stop them."""

    def __init__(self, *, system, scenario, redis, workdir, round_number=1):
        self.system = system
        self.scenario = scenario
        self.phases = scenario.phases_of_round(round_number)
        self.redis = redis
        self.workdir = workdir
        self.phase_ids = itertools.count()
        self.result = {"system": system.name, "scenario": scenario.key, "title": scenario.title,
                       "round": round_number, "transport": scenario.transport,
                       "connections": scenario.connections, "group_size": scenario.group_size,
                       "groups": scenario.groups, "socket_processes": scenario.socket_processes,
                       **redis.describe(), "phases": []}

    def run(self):
        loadgen, redis_started = None, False
        started = time.monotonic()
        try:
            self.redis.start()
            redis_started = True
            self.system.start()
            self.result["startup_s"] = round(time.monotonic() - started, 2)
            trees = ProcessTrees({**self.system.roles(), **self.redis.processes()})
            loadgen = LoadGenerator(self.workdir / "loadgen.log")
            self.loadgen_process = psutil.Process(loadgen.pid)
            loadgen.call({
                "cmd": "setup", "protocol": self.system.protocol, "ws_url": self.system.ws_url,
                "publish_url": self.system.publish_url,
                "publish_headers": self.system.publish_headers,
                "group_key": self.system.group_key, "payload_bytes": PAYLOAD_BYTES,
                "transport": self.scenario.transport,
                "sse_url": getattr(self.system, "sse_url", ""),
            }, timeout=10)
            self.connect(loadgen, trees)
            memory_before = self.redis.used_memory()
            if self.scenario.idle_s:
                self.result["idle"] = self.idle(trees, self.scenario.idle_s)
            if self.scenario.warmup_s:
                self.result["warmup"] = self.warm_up(loadgen, trees)
            for phase in self.phases:
                measured = self.run_phase(loadgen, trees, phase)
                self.result["phases"].append(measured)
                if phase.mode != "closed":  # the search quiesces after each of its steps
                    self.quiesce(loadgen, measured)
            self.result["redis_memory"] = self.stored(memory_before, self.redis.used_memory())
            loadgen.call({"cmd": "close"}, timeout=30)
        except Exception as error:
            self.result["error"] = f"{type(error).__name__}: {error}"
            self.result["traceback"] = traceback.format_exc()[-3000:]
            log_tail = getattr(self.system, "log_tail", None)
            if redis_started:  # else the system never started: no logs
                self.result["logs"] = log_tail() if log_tail else {
                    name: self.system.processes.log(name)[-1500:]
                    for name in self.system.processes.popen
                }
        finally:
            if loadgen is not None:
                loadgen.stop()
            if redis_started:
                self.system.stop()
            self.redis.stop()
            self.result["total_s"] = round(time.monotonic() - started, 2)
        return self.result

    @staticmethod
    def quiesce(loadgen, measured):
        """After a phase that did not drain, wait for its late deliveries to stop."""
        if measured["drained"]:
            return
        measured["quiesce"] = loadgen.call(
            {"cmd": "quiesce", "quiet_s": QUIET, "timeout_s": QUIESCE_TIMEOUT},
            timeout=QUIESCE_TIMEOUT + 10)
        # counted as lost by the phase, but they did arrive after its drain
        measured["arrived_after_drain"] = measured["quiesce"]["late_so_far"]

    def connect(self, loadgen, trees):
        groups = group_names(self.scenario)
        tokens = self.system.tokens(groups)
        time.sleep(SETTLE)
        rss_before = trees.rss()
        cpu_before = trees.cpu()
        reply = loadgen.call({
            "cmd": "connect", "concurrency": CONNECT_CONCURRENCY, "timeout_s": CONNECT_TIMEOUT,
            "groups": [{"name": g, "token": tokens[g], "members": self.scenario.group_size,
                        "ws_urls": self.socket_urls(index)}
                       for index, g in enumerate(groups)],
        }, timeout=CONNECT_TIMEOUT + 60 + self.scenario.connections / 50)
        cpu_after = trees.cpu()
        time.sleep(SETTLE)
        rss_after = trees.rss()
        connected = reply["connected"]
        growth = sum(rss_after.values()) - sum(rss_before.values())
        cpu = delta(cpu_after, cpu_before)
        server_cpu = sum(cpu.values())
        self.result["connect"] = {
            **reply,
            "server_cpu_s": round(server_cpu, 3),
            "server_cpu_by_role_s": {role: round(value, 3) for role, value in cpu.items()},
            "connects_per_server_cpu_s": connected / server_cpu if server_cpu > 0 else None,
            "rss_before": rss_before, "rss_after": rss_after,
            "rss_per_connection_bytes": round(growth / connected) if connected else None,
        }
        if connected < self.scenario.connections:
            raise RuntimeError(f"only {connected} of {self.scenario.connections} clients "
                               f"connected: {reply.get('errors')}")

    def socket_urls(self, group_index):
        """Where the members of the group connect, member i to the i-th URL (cycling): the
        system's socket processes, the list turned by one for each group so that every
        process gets an even share of the members."""
        urls = getattr(self.system, "ws_urls", None) or [self.system.ws_url]
        turn = group_index % len(urls)
        return urls[turn:] + urls[:turn]

    def idle(self, trees, seconds):
        """CPU of every role over `seconds` with the clients connected and nothing published:
        what a phase's figures include besides its messages (heartbeats, pings, Redis's
        own timers)."""
        cpu_before, redis_before = trees.cpu(), self.redis.cpu_seconds()
        wall_started = time.monotonic()
        time.sleep(seconds)
        cpu = delta(trees.cpu(), cpu_before)
        redis_cpu = delta(self.redis.cpu_seconds(), redis_before)
        return {"wall_s": round(time.monotonic() - wall_started, 3),
                "server_cpu_by_role_s": {role: round(value, 3) for role, value in cpu.items()},
                "redis_cpu_by_node_s": {role: round(value, 6) for role, value in redis_cpu.items()}}

    def warm_up(self, loadgen, trees):
        """Publish in a closed loop at the first window of the first phase, not counted."""
        first = self.phases[0]
        measured = self.measure(loadgen, trees, "warm-up", {
            "mode": "closed", "window": self.scenario.first_window,
            "duration_s": self.scenario.warmup_s,
            "concurrency": min(PUBLISH_CONCURRENCY, self.scenario.first_window),
            "publish": first.publish,
        })
        self.quiesce(loadgen, measured)
        return {key: measured[key] for key in ("published", "delivered", "lost", "latency_ms",
                                               "server_cpu_s", "measured_wall_s")}

    def stored(self, before, after):
        """Redis's memory before and after the publishing, and its growth per message
        published (each one an entry in its group's stream, far below the history bound)."""
        published = sum(self.published_counts())
        return {"used_before": before, "used_after": after, "published": published,
                "bytes_per_publish": round((after - before) / published) if published else None}

    def published_counts(self):
        """Messages published by the warm-up and each phase (a search: all its steps)."""
        yield (self.result.get("warmup") or {}).get("published", 0)
        for phase in self.result["phases"]:
            steps = phase.get("search")
            yield sum(step["published"] for step in steps) if steps else phase["published"]

    def run_phase(self, loadgen, trees, phase):
        if phase.mode == "closed":
            return self.search_saturation(loadgen, trees, phase)
        rate = phase.rate
        if phase.mode == "half":
            saturation = next((p for p in self.result["phases"]
                               if p["mode"] == "closed" and p.get("publish_via") == "http"), None)
            if saturation is None or not saturation["publish_rate"]:
                raise RuntimeError("half saturation needs a saturation phase before it")
            rate = 0.5 * saturation["publish_rate"] / self.scenario.groups
        return self.measure(loadgen, trees, phase.name, {
            "mode": "rate", "rate_per_group": rate, "duration_s": phase.duration,
            "concurrency": PUBLISH_CONCURRENCY, "publish": phase.publish,
        })

    def search_saturation(self, loadgen, trees, phase):
        """Measure every doubling of the closed-loop window from `first_window` messages
        up to MAX_IN_FLIGHT deliveries; the saturation point is the fastest step with p99
        within the latency cap and nothing lost or closed. Stops early only after
        OVER_CAP_IN_A_ROW steps over the cap, or a step that lost or had clients closed."""
        window = self.scenario.first_window
        steps, best, first, over_in_a_row = [], None, None, 0
        while len(steps) < SEARCH_STEPS and window * self.scenario.group_size <= MAX_IN_FLIGHT:
            measured = self.measure(loadgen, trees, phase.name, {
                "mode": "closed", "window": window, "duration_s": phase.duration,
                "concurrency": min(PUBLISH_CONCURRENCY, window), "publish": phase.publish,
            })
            self.quiesce(loadgen, measured)
            first = first or measured
            p99 = measured["latency_ms"].get("p99", float("inf"))
            # Lost (or closed) is never within the cap; only deliveries that did not turn up
            # after the drain either, or closed clients, end the search.
            lost_for_good = measured["lost"] - measured.get("arrived_after_drain", 0)
            closed = (measured["missed_by_4008_clients"] > 0
                      or bool(measured.get("clients_closed_by_code")))
            damaged = lost_for_good > 0 or closed
            within = (p99 <= LATENCY_CAP_MS and measured["lost"] == 0 and not closed
                      and measured["delivered"] > 0)
            steps.append({"window": window, "published": measured["published"],
                          "deliveries_per_s": round(measured["deliveries_per_s"]),
                          "deliveries_per_server_cpu_s": measured["deliveries_per_server_cpu_s"],
                          "p99_ms": p99, "lost": measured["lost"], "within_cap": within,
                          "server_cpu_s": measured["server_cpu_s"],
                          "other_cpu_s": measured["other_cpu_s"]})
            if within and (best is None or measured["deliveries_per_s"] > best["deliveries_per_s"]):
                best = measured
            over_in_a_row = 0 if within else over_in_a_row + 1
            if damaged or over_in_a_row >= OVER_CAP_IN_A_ROW:
                break
            window *= 2
        chosen = best or first
        chosen["latency_cap_met"] = best is not None
        chosen["search"] = steps
        return chosen

    def measure(self, loadgen, trees, name, spec):
        """Run one load generator phase; attribute the CPU spent meanwhile."""
        spec = {"id": next(self.phase_ids), "drain_s": DRAIN, "stall_s": STALL,
                "message_timeout_s": MESSAGE_TIMEOUT, "window": 0, "rate_per_group": 0.0,
                "publish": "http", **spec}
        cpu_before, machine_before = trees.cpu(), machine_busy_seconds()
        redis_before = self.redis.cpu_seconds()
        loadgen_before = self.loadgen_process.cpu_times()
        wall_started = time.monotonic()
        reply = loadgen.call({"cmd": "phase", "phase": spec},
                             timeout=spec["duration_s"] + DRAIN + 60)
        wall = time.monotonic() - wall_started
        cpu = delta(trees.cpu(), cpu_before)
        redis_cpu = delta(self.redis.cpu_seconds(), redis_before)
        loadgen_after = self.loadgen_process.cpu_times()
        loadgen_cpu = (loadgen_after.user + loadgen_after.system
                       - loadgen_before.user - loadgen_before.system)
        machine = machine_busy_seconds() - machine_before
        server_cpu = sum(cpu.values())
        delivered = reply["delivered"]
        return {
            "name": name, **reply,
            "measured_wall_s": round(wall, 3),
            "deliveries_per_s": delivered / reply["active_s"] if reply["active_s"] > 0 else 0.0,
            "server_cpu_s": round(server_cpu, 3),
            "server_cpu_by_role_s": {role: round(value, 3) for role, value in cpu.items()},
            # the same for the redis-servers, as each reports it (INFO cpu, to the µs)
            "redis_cpu_by_node_s": {role: round(value, 6) for role, value in redis_cpu.items()},
            "server_cores": round(server_cpu / wall, 3),
            "loadgen_cpu_s": round(loadgen_cpu, 3),
            "other_cpu_s": round(machine - server_cpu - loadgen_cpu, 3),
            "deliveries_per_server_cpu_s": delivered / server_cpu if server_cpu > 0 else None,
        }
