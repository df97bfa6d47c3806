"""`python -m bench`: groupcast against its peers, one system at a time, in one run.

    python -m bench            every scenario (make bench; about 35 minutes)
    python -m bench --quick    saturation only: one group of 1,000
    python -m bench --cluster  groupcast on one Redis, a 1-shard and a 3-shard cluster
    python -m bench --shard-fanout   Redis CPU per publish against subscribing processes
    python -m bench --systems groupcast,centrifugo --scenarios one-group-1000

The repeated scenarios (one group of 1,000, 100 groups of 10, SSE, one group of 100, the
connect of 10,000 clients) run first, in rounds, systems interleaved; their rows are
medians over the rounds. The run ends with the two
small-groups ratio lines and the three headline ratio lines (groupcast vs each peer,
median deliveries per server CPU-second, 1,000 connections in one group at saturation).
"""

import argparse
import datetime
import platform
import resource
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench import report, scaling
from bench.load_generator import loadgen_binary
from bench.run import ScenarioRun
from bench.scenarios import CLUSTER_ONLY, FULL, QUICK, REPEATS, SHARD_FANOUT
from bench.systems import SYSTEMS, centrifugo_binary
from bench.topologies import title as topology_title
from bench.topologies import topology
from devstack import Redis

RESULTS = Path(__file__).resolve().parent / "results"
FD_LIMIT = 20000


def options():
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true",
                      help="1,000 connections in one group at saturation only (a few minutes)")
    mode.add_argument("--cluster", action="store_true",
                      help="groupcast alone, 1,000 groups of 10 on one Redis, a 1-shard and a "
                           "3-shard Redis Cluster (about 12 minutes)")
    mode.add_argument("--shard-fanout", action="store_true",
                      help="groupcast alone, Redis CPU per publish with the groups' members on "
                           "1, 2, 4 and 8 socket processes (about 12 minutes)")
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"comma-separated, from: {', '.join(SYSTEMS)}")
    parser.add_argument("--scenarios", default="",
                        help="comma-separated scenario keys (default: all of the mode)")
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help=f"rounds of the repeated scenarios (default {REPEATS}; rows are medians)")
    parser.add_argument("--keep", action="store_true", help="keep the run's logs directory")
    return parser.parse_args()


def plan(scenarios, systems, repeats):
    """(system, scenario, round, Redis topology) in run order: the repeated scenarios
    first, round by round, every system in each round (the order rotating by one each
    round), so that a slow spell on a shared machine falls on one round of every system
    rather than on all rounds of one; a scenario on several Redis topologies runs on each
    in turn, their order rotating the same way; then every other scenario, system by
    system. The topology None is the run's shared Redis."""
    runs = []
    repeated = [s for s in scenarios if s.repeated]
    for round_number in range(1, max(1, repeats) + 1 if repeated else 1):
        for system in rotated(systems, round_number):
            runs += [(system, s, round_number, redis)
                     for s in repeated if s.runs_on(system)
                     for redis in rotated(s.topologies(), round_number)]
    for system in systems:
        runs += [(system, s, 1, redis) for s in scenarios if not s.repeated and s.runs_on(system)
                 for redis in s.topologies()]
    return runs


def rotated(items, round_number):
    """`items` turned by one for each round after the first."""
    items = list(items)
    shift = (round_number - 1) % len(items)
    return items[shift:] + items[:shift]


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(FD_LIMIT, hard) if hard != resource.RLIM_INFINITY else FD_LIMIT
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def stop_on_sigterm():
    def stop(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, stop)


def main():
    args = options()
    raise_fd_limit()
    stop_on_sigterm()
    scenarios = (QUICK if args.quick else CLUSTER_ONLY if args.cluster
                 else SHARD_FANOUT if args.shard_fanout else FULL)
    if (args.cluster or args.shard_fanout) and args.systems == ",".join(SYSTEMS):
        args.systems = "groupcast"  # their scenarios run groupcast alone
    if args.scenarios:
        wanted = args.scenarios.split(",")
        scenarios = [s for s in scenarios if s.key in wanted]
        if not scenarios:
            sys.exit(f"no such scenarios in this mode; known: {[s.key for s in FULL]}")
    systems = [name.strip() for name in args.systems.split(",") if name.strip()]
    unknown = [name for name in systems if name not in SYSTEMS]
    if unknown:
        sys.exit(f"unknown systems {unknown}; known: {list(SYSTEMS)}")

    loadgen_binary()
    if "centrifugo" in systems:
        centrifugo_binary()
    RESULTS.mkdir(exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    workdir = Path(tempfile.mkdtemp(prefix="groupcast-bench-"))
    redis_server = Redis(workdir / "redis", fsync="everysec")
    run = {"meta": {
        "started": started.isoformat(timespec="seconds"),
        "mode": ("quick" if args.quick else "cluster" if args.cluster
                 else "shard-fanout" if args.shard_fanout else "full"),
        "cores": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(), "load_average_before": list(psutil.getloadavg()),
        "scenarios": [s.key for s in scenarios], "systems": systems, "repeats": args.repeats,
    }, "results": []}
    clock = time.monotonic()
    try:
        redis_server.start()
        run["meta"]["redis_version"] = redis_version(redis_server.url)
        for system_name, scenario, round_number, redis_key in plan(scenarios, systems, args.repeats):
            label = f" (round {round_number})" if scenario.repeated else ""
            on = f", on a {topology_title(redis_key)}" if redis_key else ""
            print(f"[{time.monotonic() - clock:6.0f}s] {system_name}: {scenario.title}{on}{label}",
                  flush=True)
            run_dir = (workdir / system_name.replace(" ", "-")
                       / f"{scenario.key}-{round_number}{'-' + redis_key if redis_key else ''}")
            redis = topology(redis_key, run_dir / "redis", redis_server)
            system = SYSTEMS[system_name](redis_url=redis.url, workdir=run_dir,
                                          socket_processes=scenario.socket_processes)
            result = ScenarioRun(system=system, scenario=scenario, round_number=round_number,
                                 redis=redis, workdir=system.workdir).run()
            run["results"].append(result)
            print(summary_line(result), flush=True)
    except KeyboardInterrupt:
        print("interrupted: writing what was measured", file=sys.stderr)
        run["meta"]["interrupted"] = True
    finally:
        redis_server.stop()
        run["meta"]["wall_s"] = time.monotonic() - clock
        run["summary"] = report.summary(run["results"])
        outputs = write_outputs(run, stamp)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"logs kept in {workdir}")
    print("\n".join(f"wrote {path.relative_to(RESULTS.parent.parent)}" for path in outputs))
    lines = scaling.cluster_lines(run["results"]) + scaling.shard_fanout_lines(run["results"])
    if run["meta"]["mode"] in ("full", "quick"):
        lines += report.small_groups_lines(run["results"]) + report.ratio_lines(run["results"])
    print("\n".join(lines))


def redis_version(url):
    import redis
    client = redis.Redis.from_url(url)
    try:
        return client.info("server")["redis_version"]
    finally:
        client.close()


def summary_line(result):
    if "error" in result:
        return f"    error: {result['error'][:300]}"
    parts = []
    for p in result["phases"]:
        window = f" W={p['window']}" if p["mode"] == "closed" else ""
        parts.append(f"{p['name']}{window}: {p['deliveries_per_s']:,.0f}/s, "
                     f"{(p['deliveries_per_server_cpu_s'] or 0):,.0f}/cpu-s, "
                     f"p99 {p['latency_ms'].get('p99', 0):.1f} ms, lost {p['lost']}")
    connect = result.get("connect") or {}
    if connect.get("connected"):
        per = connect.get("rss_per_connection_bytes")
        parts.insert(0, f"connect: {connect['connected']:,} in {connect['seconds']:.1f} s, "
                        f"{(connect.get('connects_per_server_cpu_s') or 0):,.0f}/cpu-s, "
                        f"{(per or 0) / 1024:.1f} kB each")
    return "    " + "; ".join(parts)


def write_outputs(run, stamp):
    json_path = RESULTS / f"{stamp}.json"
    report.write_json(run, json_path)
    markdown = report.markdown(run)
    latest = RESULTS / "latest.md"
    latest.write_text(markdown + "\n")
    outputs = [json_path, latest]
    try:
        # the one-group plots are of one group against connections: full and quick only
        paths = report.plots(run, RESULTS / stamp) if run["meta"]["mode"] in ("full", "quick") else []
        topologies = RESULTS / f"{stamp}-topologies.png"
        if scaling.cluster_plot(run, topologies):
            paths.append(topologies)
        for path in paths:
            shutil.copyfile(path, RESULTS / path.name.replace(stamp, "latest"))
            outputs.append(path)
    except Exception as error:  # the numbers matter more than the pictures
        print(f"plots failed: {error}", file=sys.stderr)
    return outputs


if __name__ == "__main__":
    main()
