"""The scale figures: groupcast on Redis topologies (single, 1-shard and 3-shard cluster)
and Redis's CPU per publish as the socket processes holding a group grow. Their summary,
markdown and closing lines; bench/report.py puts them into the run's outputs.

Every figure is a median over the rounds (each round runs every topology, interleaved),
shown with the rounds' range; a ratio between topologies is the ratio of their medians,
with the range of the per-round ratios.
"""

import statistics

from bench.scenarios import (CLUSTER_ROW, CLUSTER_ROW_HTTP, CLUSTER_ROW_RATE, RATE_WS,
                             SHARD_FANOUT)
from bench.topologies import title

# The bound: at the 1-shard point the cluster costs at most this much more server
# CPU per delivery than one Redis.
CLUSTER_COST_BOUND = 1.15
# How the plot groups the roles' CPU.
KINDS = {"socket": ("socket",), "http": ("http", "front"), "worker": ("worker",),
         "redis": ("redis",)}
# The topologies scenario's phases, in the order the tables show them.
CLUSTER_ROWS = (CLUSTER_ROW, CLUSTER_ROW_HTTP, CLUSTER_ROW_RATE)
FANOUT_SCENARIOS = [s.key for s in SHARD_FANOUT]


def role_kind(role):
    """`socket2` -> `socket`, `redis0` -> `redis`: the role a process tree belongs to."""
    return role.rstrip("0123456789")


def cpu_of(cpu_by_role, kind):
    return sum(value for role, value in cpu_by_role.items() if role_kind(role) == kind)


def stats(values):
    """Median and spread of values over the rounds (None when there are none)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    median = statistics.median(values)
    return {"median": median, "min": min(values), "max": max(values), "n": len(values),
            "values": values,
            "spread_pct": 100 * (max(values) - min(values)) / median if median else None}


def _phase(result, name):
    return next((p for p in result.get("phases", []) if p["name"] == name), None)


def _runs(results, scenario, redis):
    return sorted((r for r in results if r["scenario"] == scenario and r.get("redis") == redis
                   and r["system"] == "groupcast"), key=lambda r: r.get("round", 1))


def topologies_of(results, scenario):
    order = {"single": 0}
    found = {r.get("redis") for r in results if r["scenario"] == scenario and r.get("redis")}
    return sorted(found, key=lambda key: (order.get(key, 1), key))


def redis_cpu(phase, idle=None):
    """{node: CPU seconds} of the redis-servers in a phase, as they report it (INFO cpu),
    less their idle rate times the phase's wall time when `idle` is given."""
    cpu = phase.get("redis_cpu_by_node_s") or {
        role: value for role, value in phase["server_cpu_by_role_s"].items()
        if role_kind(role) == "redis"}
    if idle is None:
        return cpu
    rates = {node: value / idle["wall_s"] for node, value in idle["redis_cpu_by_node_s"].items()}
    return {node: value - rates.get(node, 0) * phase["measured_wall_s"] for node, value in cpu.items()}


def phase_figures(phase, idle=None):
    """What one measured phase says about Redis and the roles, per publish and delivery
    (Redis's CPU also net of its idle rate, when the run measured one)."""
    published, delivered = phase["published"], phase["delivered"]
    cpu = phase["server_cpu_by_role_s"]
    wall = phase["measured_wall_s"] or None
    by_node = redis_cpu(phase)
    redis_total = sum(by_node.values())
    busiest = max(by_node.values(), default=0)
    net = sum(redis_cpu(phase, idle).values()) if idle else None
    return {
        "publishes_per_s": phase["publish_rate"],
        "deliveries_per_s": phase["deliveries_per_s"],
        "deliveries_per_server_cpu_s": phase["deliveries_per_server_cpu_s"],
        "server_cpu_us_per_delivery": 1e6 * phase["server_cpu_s"] / delivered if delivered else None,
        "redis_cpu_us_per_publish": 1e6 * redis_total / published if published else None,
        "redis_cpu_us_per_publish_net": 1e6 * net / published if published and idle else None,
        "redis_cpu_share": redis_total / phase["server_cpu_s"] if phase["server_cpu_s"] else None,
        # the capacity model's figures: what each role spends per unit of its work
        "socket_cpu_us_per_delivery": 1e6 * cpu_of(cpu, "socket") / delivered if delivered else None,
        # server CPU per delivery split by the kind of role (the plot's stacked bars)
        "cpu_us_per_delivery_by_kind": {
            kind: 1e6 * sum(v for role, v in cpu.items() if role_kind(role) in kinds) / delivered
            for kind, kinds in KINDS.items()} if delivered else {},
        "http_cpu_us_per_publish": (1e6 * (cpu_of(cpu, "http") + cpu_of(cpu, "front")) / published
                                    if published else None),
        "redis_cores": redis_total / wall if wall else None,
        "busiest_redis_cores": busiest / wall if wall else None,
        # each redis-server's CPU per publish of the whole phase: a shard's share of the work
        "redis_cpu_us_per_publish_by_node": {
            node: 1e6 * value / published for node, value in sorted(by_node.items())
        } if published else None,
        # the publish rate at which the busiest redis-server would spend one whole core
        # (Redis runs commands on one thread), were every other role fast enough: what
        # the topology's Redis carries, as opposed to what this machine's roles fed it
        "redis_bound_publishes_per_s": published / busiest if busiest > 0 else None,
        "socket_cores": cpu_of(cpu, "socket") / wall if wall else None,
        "http_cores": (cpu_of(cpu, "http") + cpu_of(cpu, "front")) / wall if wall else None,
        "server_cores": phase["server_cores"],
        "loadgen_cores": phase["loadgen_cpu_s"] / wall if wall else None,
        "other_cores": phase["other_cpu_s"] / wall if wall else None,
        "p99_ms": phase["latency_ms"].get("p99"),
        "window": phase["window"],
        "lost": phase["lost"],
    }


def topology_summary(results, scenario, phase_name):
    """{topology: {figure: stats over the rounds}} for one phase of a topologies scenario
    (a figure that is a dict, such as each redis-server's, gives {key: stats})."""
    out = {}
    for redis in topologies_of(results, scenario):
        per_round = {}
        for result in _runs(results, scenario, redis):
            phase = _phase(result, phase_name)
            if phase is not None and phase["delivered"]:
                per_round[result.get("round", 1)] = phase_figures(phase, result.get("idle"))
        if per_round:
            out[redis] = summarise(list(per_round.values()))
            out[redis]["rounds"] = per_round
    return out


def summarise(figures):
    """Stats over the rounds of each figure; dict-valued figures key by key."""
    out = {}
    for key in figures[0]:
        if isinstance(figures[0][key], dict):
            parts = sorted({part for f in figures for part in f[key] or {}})
            out[key] = {part: stats([(f[key] or {}).get(part) for f in figures]) for part in parts}
        else:
            out[key] = stats([f[key] for f in figures])
    return out


def topology_ratio(summary, key, over, under):
    """summary[over][key] / summary[under][key]: the medians' ratio and the per-round
    ratios' range (round r against round r)."""
    if over not in summary or under not in summary:
        return None
    top, bottom = summary[over][key], summary[under][key]
    if not top or not bottom or not bottom["median"]:
        return None
    rounds_over, rounds_under = summary[over]["rounds"], summary[under]["rounds"]
    paired = [rounds_over[r][key] / rounds_under[r][key] for r in sorted(rounds_over)
              if r in rounds_under and rounds_under[r][key]]
    return {"ratio": top["median"] / bottom["median"], "per_round": paired,
            "per_round_min": min(paired) if paired else None,
            "per_round_max": max(paired) if paired else None}


def cluster_summary(results):
    """The topologies scenario: each phase's figures per topology, the 3-shard / 1-shard
    ratios and the 1-shard cluster's cost per delivery against one Redis."""
    out = {}
    for scenario, phase_name in CLUSTER_ROWS:
        summary = topology_summary(results, scenario, phase_name)
        if not summary:
            continue
        out[phase_name] = {
            "scenario": scenario, "topologies": summary,
            "three_over_one_shard": {
                key: topology_ratio(summary, key, "cluster-3", "cluster-1")
                for key in ("publishes_per_s", "deliveries_per_server_cpu_s",
                            "redis_bound_publishes_per_s")},
            # > 1: the 1-shard cluster spends more server CPU per delivery than one Redis
            "one_shard_cost_over_single": topology_ratio(
                summary, "server_cpu_us_per_delivery", "cluster-1", "single"),
            "redis_us_per_publish_one_shard_over_single": topology_ratio(
                summary, "redis_cpu_us_per_publish_net", "cluster-1", "single"),
        }
    return out


def cost_targets(results):
    """The issue's bound, judged twice on the medians: at the equal load, where every
    topology does the same work, and at the WebSocket publish saturation, where each
    stops at its own window (CPU per delivery falls as the window grows, since more
    messages share each event-loop pass, so there a cheaper topology also gains from a
    larger window)."""
    summaries = cluster_summary(results)
    out = []
    for phase_name in (CLUSTER_ROW_RATE[1], CLUSTER_ROW[1]):
        summary = summaries.get(phase_name)
        cost = summary and summary["one_shard_cost_over_single"]
        if not cost:
            continue
        n = min(summary["topologies"][t]["server_cpu_us_per_delivery"]["n"]
                for t in ("single", "cluster-1"))
        out.append({"target": "1-shard cluster: ≤ 15% more server CPU per delivery than one "
                              f"Redis (1,000 groups of 10, {phase_name})",
                    "value": cost["ratio"], "unit": "x",
                    "met": cost["ratio"] <= CLUSTER_COST_BOUND, "n": n})
    return out


def _median(measured):
    return measured and measured["median"]


def _fmt(value, digits=0):
    return "–" if value is None else f"{value:,.{digits}f}"


def _cell(measured, digits=0):
    if not measured:
        return "–"
    if measured["n"] < 2:
        return _fmt(measured["median"], digits)
    return (f"{_fmt(measured['median'], digits)} ({_fmt(measured['min'], digits)}–"
            f"{_fmt(measured['max'], digits)})")


def _per_node(figures):
    """`12.1 / 11.8 / 12.4`: each redis-server's CPU µs per publish, medians."""
    by_node = figures.get("redis_cpu_us_per_publish_by_node") or {}
    return " / ".join(_fmt(_median(by_node[node]), 1) for node in sorted(by_node)) or "–"


def ratio_cell(measured, rounds="rounds "):
    """`1.06x (rounds 0.98–1.12)`: a ratio's median and, over several rounds, its range
    (the report's tables leave out the word)."""
    if not measured:
        return "–"
    cell = f"{measured['ratio']:.2f}x"
    if len(measured["per_round"]) > 1:
        cell += f" ({rounds}{measured['per_round_min']:.2f}–{measured['per_round_max']:.2f})"
    return cell


def cluster_lines(results):
    """The closing lines of a run with the topologies scenario."""
    lines = []
    for phase_name, summary in cluster_summary(results).items():
        for redis, figures in summary["topologies"].items():
            lines.append(
                f"groupcast, 1,000 groups of 10, {phase_name}, {title(redis)}: "
                f"{_fmt(figures['publishes_per_s']['median'])} publishes/s, "
                f"{_fmt(figures['deliveries_per_server_cpu_s']['median'])} deliveries per server "
                f"CPU-second, redis-server CPU µs per publish by server "
                f"{_per_node(figures)}")
        ratios = summary["three_over_one_shard"]
        if ratios["publishes_per_s"]:
            lines.append(f"3 shards / 1 shard ({phase_name}): "
                         f"{ratio_cell(ratios['publishes_per_s'])} publishes/s, "
                         f"{ratio_cell(ratios['deliveries_per_server_cpu_s'])} deliveries per "
                         f"server CPU-second, {ratio_cell(ratios['redis_bound_publishes_per_s'])} "
                         "publishes/s at which the busiest redis-server is one core")
        cost = summary["one_shard_cost_over_single"]
        if cost:
            lines.append(f"1-shard cluster vs one Redis ({phase_name}): {ratio_cell(cost)} server "
                         f"CPU per delivery (bound: ≤ {CLUSTER_COST_BOUND:.2f}x)")
    return lines


def cluster_markdown(results):
    summaries = cluster_summary(results)
    if not summaries:
        return []
    out = ["## Redis topologies: 1,000 groups of 10 (`many-groups-10000`)", "",
           "groupcast alone with 3 socket processes, its Redis started fresh for each run: one "
           "redis-server, a 1-shard and a 3-shard Redis Cluster (masters only, AOF everysec "
           "like the single one). Medians over the rounds (range). Server CPU counts every "
           "role and every redis-server; cores are CPU-seconds per wall second of the phase; "
           "redis-server CPU is what the servers report (INFO cpu), net of their rate while "
           "the clients sat idle for 3 s before the phases. \"Redis-bound publishes/s\" is the "
           "publish rate at which the busiest redis-server would spend a whole core at its "
           "measured CPU per publish: what the topology's Redis could carry with faster "
           "roles in front of it.", ""]
    for phase_name, summary in summaries.items():
        out += [f"### {phase_name}", "",
                "| Redis | publishes/s | deliveries/s | deliveries per server CPU-s | server CPU µs "
                "per delivery | socket µs per delivery | http µs per publish "
                "| redis-server CPU µs per publish, net of idle [gross] | each redis-server, µs "
                "per publish | Redis-bound publishes/s | redis share of server CPU | "
                "busiest redis-server, cores | socket cores | http cores | load gen cores | "
                "other cores | p99 ms | windows |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for redis, f in summary["topologies"].items():
            share = f["redis_cpu_share"]
            windows = [w for w in f["window"]["values"] if w]
            out.append(
                f"| {title(redis)} | {_cell(f['publishes_per_s'])} | {_cell(f['deliveries_per_s'])} "
                f"| {_cell(f['deliveries_per_server_cpu_s'])} | {_cell(f['server_cpu_us_per_delivery'], 1)} "
                f"| {_cell(f['socket_cpu_us_per_delivery'], 1)} | {_cell(f['http_cpu_us_per_publish'])} "
                f"| {_cell(f['redis_cpu_us_per_publish_net'], 1)} "
                f"[{_fmt(_median(f['redis_cpu_us_per_publish']), 1)}] "
                f"| {_per_node(f)} | {_cell(f['redis_bound_publishes_per_s'])} "
                f"| {_fmt(share and 100 * share['median'], 1)}% "
                f"| {_cell(f['busiest_redis_cores'], 2)} | {_cell(f['socket_cores'], 2)} "
                f"| {_cell(f['http_cores'], 2)} | {_cell(f['loadgen_cores'], 2)} "
                f"| {_cell(f['other_cores'], 2)} | {_cell(f['p99_ms'], 1)} "
                f"| {', '.join(map(str, windows)) or '–'} |")
        ratios = summary["three_over_one_shard"]
        out += ["", f"- 3 shards / 1 shard: {ratio_cell(ratios['publishes_per_s'])} publishes/s, "
                    f"{ratio_cell(ratios['deliveries_per_server_cpu_s'])} deliveries per server "
                    f"CPU-second, {ratio_cell(ratios['redis_bound_publishes_per_s'])} "
                    "Redis-bound publishes/s",
                f"- 1-shard cluster / one Redis, server CPU per delivery: "
                f"{ratio_cell(summary['one_shard_cost_over_single'])} (bound ≤ "
                f"{CLUSTER_COST_BOUND:.2f}x); redis-server CPU per publish: "
                f"{ratio_cell(summary['redis_us_per_publish_one_shard_over_single'])}", ""]
    return out


def fanout_figures(result):
    """Redis and socket CPU per publish in one run of the shard fan-out series, gross and
    net of the idle rate measured just before (heartbeats, pings, Redis's timers)."""
    phase = _phase(result, RATE_WS.name)
    idle = result.get("idle")
    if phase is None or not phase["published"] or not idle:
        return None
    published, wall = phase["published"], phase["measured_wall_s"]
    cpu, idle_cpu = phase["server_cpu_by_role_s"], idle["server_cpu_by_role_s"]
    figures = {"processes": result["socket_processes"], "publishes_per_s": phase["publish_rate"],
               "deliveries_per_s": phase["deliveries_per_s"], "p99_ms": phase["latency_ms"].get("p99"),
               "lost": phase["lost"]}
    gross, idle_cores = {}, {}
    gross["redis"] = sum(redis_cpu(phase).values())
    idle_cores["redis"] = sum(idle["redis_cpu_by_node_s"].values()) / idle["wall_s"]
    gross["socket"] = cpu_of(cpu, "socket")
    idle_cores["socket"] = cpu_of(idle_cpu, "socket") / idle["wall_s"]
    for kind in ("redis", "socket"):
        figures[f"{kind}_us_per_publish"] = 1e6 * gross[kind] / published
        figures[f"{kind}_us_per_publish_net"] = 1e6 * (gross[kind] - idle_cores[kind] * wall) / published
        figures[f"{kind}_idle_cores"] = idle_cores[kind]
    return figures


def shard_fanout_summary(results):
    """{topology: {processes: {figure: stats}}} and, per topology, a least-squares line
    through the medians: CPU µs per publish = intercept + slope × subscribing processes."""
    out = {}
    for redis in sorted({r.get("redis") for r in results if r["scenario"] in FANOUT_SCENARIOS}
                        - {None}):
        points = {}
        for scenario in FANOUT_SCENARIOS:
            per_round = [f for f in map(fanout_figures, _runs(results, scenario, redis)) if f]
            if per_round:
                points[per_round[0]["processes"]] = {
                    key: stats([f[key] for f in per_round]) for key in per_round[0]}
        if not points:
            continue
        out[redis] = {"points": points, "fit": {
            kind: line([(p, v[f"{kind}_us_per_publish_net"]["median"]) for p, v in points.items()])
            for kind in ("redis", "socket")}}
    return out


def line(points):
    """Least squares y = intercept + slope × x, or None with fewer than 2 points."""
    if len(points) < 2:
        return None
    xs, ys = zip(*points)
    mean_x, mean_y = statistics.mean(xs), statistics.mean(ys)
    slope = (sum((x - mean_x) * (y - mean_y) for x, y in points)
             / sum((x - mean_x) ** 2 for x in xs))
    return {"intercept": mean_y - slope * mean_x, "slope": slope}


def shard_fanout_lines(results):
    lines = []
    for redis, summary in shard_fanout_summary(results).items():
        fit = summary["fit"]["redis"]
        points = ", ".join(f"{p}: {_fmt(v['redis_us_per_publish_net']['median'], 1)}"
                           for p, v in sorted(summary["points"].items()))
        lines.append(f"{title(redis)}: redis-server CPU µs per publish by subscribing socket "
                     f"processes (net of idle) {points}"
                     + (f"; fit {fit['intercept']:.1f} + {fit['slope']:.1f} per process" if fit else ""))
    return lines


def shard_fanout_markdown(results):
    summaries = shard_fanout_summary(results)
    if not summaries:
        return []
    out = ["## Shard fan-out: Redis CPU per publish against subscribing socket processes", "",
           "100 groups of 8, each group's members dealt over the socket processes (every publish "
           "is one pub/sub message to each of them), 500 publishes/s by the members over their "
           "WebSockets for 10 s. CPU per publish net of the idle rate measured for 5 s before "
           "(gross in brackets); medians over the rounds (range).", ""]
    for redis, summary in summaries.items():
        out += [f"### {title(redis)}", "",
                "| socket processes | publishes/s | redis-server µs per publish | socket µs per "
                "publish (all processes) | redis idle cores | p99 ms | lost |",
                "|---:|---:|---:|---:|---:|---:|---:|"]
        for processes, f in sorted(summary["points"].items()):
            out.append(
                f"| {processes} | {_cell(f['publishes_per_s'])} "
                f"| {_cell(f['redis_us_per_publish_net'], 1)} [{_fmt(f['redis_us_per_publish']['median'], 1)}] "
                f"| {_cell(f['socket_us_per_publish_net'])} [{_fmt(f['socket_us_per_publish']['median'])}] "
                f"| {_fmt(f['redis_idle_cores']['median'], 4)} | {_cell(f['p99_ms'], 1)} "
                f"| {_fmt(sum(f['lost']['values']))} |")
        for kind, fit in summary["fit"].items():
            if fit:
                out.append(f"\nFit, {kind}: {fit['intercept']:.1f} µs + {fit['slope']:.1f} µs per "
                           "subscribing process, per publish.")
        out.append("")
    return out


def cluster_plot(run, path):
    """One PNG of the topologies scenario: publishes/s at saturation, server CPU per
    delivery at the equal load by role, and each redis-server's CPU per publish there
    (medians, the rounds' range as error bars). False when the run has no such rows."""
    summaries = cluster_summary(run["results"])
    if not summaries:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    topologies = [t for t in ("single", "cluster-1", "cluster-3")
                  if any(t in s["topologies"] for s in summaries.values())]
    xs = range(len(topologies))

    def bar(axis, x, measured, **style):
        if measured:
            axis.bar(x, measured["median"], yerr=[[measured["median"] - measured["min"]],
                                                  [measured["max"] - measured["median"]]],
                     capsize=2, **style)

    axis = axes[0]
    saturations = [name for _, name in (CLUSTER_ROW, CLUSTER_ROW_HTTP) if name in summaries]
    width = 0.8 / max(1, len(saturations))
    for index, name in enumerate(saturations):
        for x, topology in zip(xs, topologies):
            figures = summaries[name]["topologies"].get(topology)
            bar(axis, x + (index - (len(saturations) - 1) / 2) * width,
                figures and figures["publishes_per_s"], width=width, color=f"C{index}",
                label=(f"{name}, HTTP publish" if name == CLUSTER_ROW_HTTP[1] else name)
                if x == 0 else None)
    axis.set_title("publishes/s at saturation\n(what this machine's roles fed Redis)", fontsize=9)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8)

    equal = summaries.get(CLUSTER_ROW_RATE[1], {}).get("topologies", {})
    axis = axes[1]
    for x, topology in zip(xs, topologies):
        bottom = 0
        by_kind = (equal.get(topology) or {}).get("cpu_us_per_delivery_by_kind", {})
        for index, kind in enumerate(KINDS):
            value = _median(by_kind.get(kind))
            if value:
                axis.bar(x, value, 0.6, bottom=bottom, color=f"C{index + 2}",
                         label=kind if x == 0 else None)
                bottom += value
        total = (equal.get(topology) or {}).get("server_cpu_us_per_delivery")
        if total:
            axis.errorbar(x, total["median"], yerr=[[total["median"] - total["min"]],
                                                    [total["max"] - total["median"]]],
                          fmt="none", ecolor="black", capsize=3)
    axis.set_title(f"server CPU µs per delivery, by role\n{CLUSTER_ROW_RATE[1]}", fontsize=9)
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8)

    axis = axes[2]
    nodes = max((len((equal.get(t) or {}).get("redis_cpu_us_per_publish_by_node", {}))
                 for t in topologies), default=1) or 1
    width = 0.8 / nodes
    for x, topology in zip(xs, topologies):
        by_node = (equal.get(topology) or {}).get("redis_cpu_us_per_publish_by_node", {})
        for index, node in enumerate(sorted(by_node)):
            bar(axis, x + (index - (len(by_node) - 1) / 2) * width, by_node[node],
                width=width, color=f"C{index + 6}")
    axis.set_title(f"each redis-server's CPU µs per publish (of all publishes)\n"
                   f"{CLUSTER_ROW_RATE[1]}", fontsize=9)

    for axis in axes:
        axis.set_xticks(list(xs))
        axis.set_xticklabels([title(t) for t in topologies], fontsize=8)
        axis.grid(True, axis="y", alpha=0.3)
    figure.suptitle("groupcast, 1,000 groups of 10 over 3 socket processes: medians over the "
                    "rounds, bars: the rounds' range", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
