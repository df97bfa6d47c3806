"""The run's outputs: JSON, the markdown tables, the plots and the ratio lines.

Repeated scenarios have one result per round; every row and ratio is taken from the
median over the rounds (ratios: median of groupcast / median of the peer), shown with
the rounds' spread: min–max and (max − min) / median.
"""

import json
import statistics

from bench import scaling
from bench.scaling import stats
from bench.scenarios import (CONNECT_SCENARIO, HEADLINE, ONE_GROUP_100, SMALL_GROUPS,
                             SMALL_GROUPS_WS, SSE_ROW)
from bench.topologies import title as topology_title

PEERS = ("centrifugo", "python-socketio", "stock channels")
SMALL_GROUPS_PEERS = ("centrifugo", "python-socketio")
ORDER = ("groupcast", "centrifugo", "python-socketio", "stock channels", "websockets ceiling")


def _phase_value(key):
    def value(result, phase_name):
        measured = next((p for p in result.get("phases", []) if p["name"] == phase_name), None)
        return None if measured is None else measured.get(key)
    return value


def _connect_value(result, _phase_name):
    return (result.get("connect") or {}).get("connects_per_server_cpu_s")


def _memory_value(result, _phase_name):
    per = (result.get("connect") or {}).get("rss_per_connection_bytes")
    return None if per is None else per / 1024


# The rows of the summary: one value per system and round, shown as medians.
ROWS = (
    {"key": "one-group-1000", "title": "1,000 connections, one group, saturation (HTTP publish)",
     "where": HEADLINE, "value": _phase_value("deliveries_per_server_cpu_s"),
     "unit": "deliveries per server CPU-s", "higher_is_better": True},
    {"key": "groups-of-10", "title": "100 groups of 10, saturation (HTTP publish)",
     "where": SMALL_GROUPS, "value": _phase_value("deliveries_per_server_cpu_s"),
     "unit": "deliveries per server CPU-s", "higher_is_better": True},
    {"key": "groups-of-10-ws",
     "title": "100 groups of 10, saturation, clients publishing over their WebSocket",
     "where": SMALL_GROUPS_WS, "value": _phase_value("deliveries_per_server_cpu_s"),
     "unit": "deliveries per server CPU-s", "higher_is_better": True},
    {"key": "one-group-100", "title": "100 connections, one group, saturation (HTTP publish)",
     "where": ONE_GROUP_100, "value": _phase_value("deliveries_per_server_cpu_s"),
     "unit": "deliveries per server CPU-s", "higher_is_better": True},
    {"key": "sse", "title": "1,000 connections, one group, saturation, Server-Sent Events clients",
     "where": SSE_ROW, "value": _phase_value("deliveries_per_server_cpu_s"),
     "unit": "deliveries per server CPU-s", "higher_is_better": True},
    {"key": "connect", "title": "Connection set-up: 10,000 clients connecting and subscribing",
     "where": (CONNECT_SCENARIO, None), "value": _connect_value,
     "unit": "connects per server CPU-s", "higher_is_better": True},
    {"key": "idle-memory", "title": "Idle memory per connection (10,000 clients)",
     "where": (CONNECT_SCENARIO, None), "value": _memory_value,
     "unit": "kB of server RSS per connection", "higher_is_better": False},
)
ROW = {row["key"]: row for row in ROWS}


def _results_of(results, system, scenario):
    return sorted((r for r in results if r["system"] == system and r["scenario"] == scenario),
                  key=lambda r: r.get("round", 1))


def row_values(results, row, system):
    """{round: value} of one row for one system."""
    scenario, phase = row["where"]
    values = {}
    for result in _results_of(results, system, scenario):
        value = row["value"](result, phase)
        if value is not None:
            values[result.get("round", 1)] = value
    return values


def row_stats(results, key, system):
    return stats(list(row_values(results, ROW[key], system).values()))


def median_of(results, key, system):
    measured = row_stats(results, key, system)
    return measured and measured["median"]


def ratio(results, key, peer, system="groupcast"):
    """groupcast's median over the peer's (for memory: the peer's over groupcast's is not
    used; the ratio is still ours / theirs), with the per-round ratios' range."""
    ours, theirs = row_values(results, ROW[key], system), row_values(results, ROW[key], peer)
    ours_median = statistics.median(ours.values()) if ours else None
    theirs_median = statistics.median(theirs.values()) if theirs else None
    if not ours_median or not theirs_median:
        return None
    paired = [ours[r] / theirs[r] for r in sorted(ours) if r in theirs and theirs[r]]
    return {"ratio": ours_median / theirs_median,
            "per_round_min": min(paired) if paired else None,
            "per_round_max": max(paired) if paired else None,
            "per_round": paired}


def headline_ratios(results):
    """Peer → groupcast's median deliveries per server CPU-second over the peer's median."""
    return {peer: (ratio(results, "one-group-1000", peer) or {}).get("ratio") for peer in PEERS}


def _ratio_line(label, value):
    # "n/a" when the run did not measure it (a run of other scenarios)
    shown = f"{value:.2f}x" if value is not None else "n/a"
    return f"groupcast vs {label}: {shown} deliveries per server CPU-second"


def ratio_lines(results):
    return [_ratio_line(peer, value) for peer, value in headline_ratios(results).items()]


def small_groups_lines(results):
    return [_ratio_line(f"{peer} (100 groups of 10)",
                        (ratio(results, "groups-of-10", peer) or {}).get("ratio"))
            for peer in SMALL_GROUPS_PEERS]


def summary(results):
    """Every row: per system the median and spread, and groupcast's ratio to each peer."""
    out = {}
    systems = _systems(results)
    for row in ROWS:
        per_system = {}
        for system in systems:
            measured = stats(list(row_values(results, row, system).values()))
            if measured is not None:
                per_system[system] = measured
        if not per_system:
            continue
        out[row["key"]] = {
            "title": row["title"], "unit": row["unit"], "scenario": row["where"][0],
            "phase": row["where"][1], "systems": per_system,
            "groupcast_ratio": {peer: ratio(results, row["key"], peer)
                                for peer in systems if peer != "groupcast" and peer in per_system},
        }
    sse, ws = median_of(results, "sse", "groupcast"), median_of(results, "one-group-1000", "groupcast")
    if sse and ws:
        out["sse"]["groupcast_sse_over_websocket"] = sse / ws
    cluster = scaling.cluster_summary(results)
    if cluster:
        out["cluster"] = cluster
    fanout = scaling.shard_fanout_summary(results)
    if fanout:
        out["shard_fanout"] = fanout
    out["targets"] = targets(results)
    return out


def _phase_stat(results, system, scenario, phase, pick):
    values = []
    for result in _results_of(results, system, scenario):
        measured = next((p for p in result.get("phases", []) if p["name"] == phase), None)
        if measured is not None and pick(measured) is not None:
            values.append(pick(measured))
    return stats(values)


def targets(results):
    """design.md's targets for groupcast, each judged on medians (n = rounds behind it)."""
    def judged(name, value, met, n, unit="x"):
        return {"target": name, "value": value, "unit": unit, "met": met, "n": n}

    out = []
    for key, peer, floor, name in (
            ("one-group-1000", "centrifugo", 1.0, "one group of 1,000: ≥ 1.0x Centrifugo"),
            ("one-group-1000", "stock channels", 3.0, "one group of 1,000: ≥ 3x stock Channels (floor)"),
            ("groups-of-10", "python-socketio", 1.5, "100 groups of 10: ≥ 1.5x python-socketio"),
            ("groups-of-10", "centrifugo", 0.5, "100 groups of 10: ≥ 0.5x Centrifugo"),
            ("groups-of-10-ws", "centrifugo", 1.0,
             "100 groups of 10, WebSocket publish: ≥ 1.0x Centrifugo"),
            ("one-group-100", "centrifugo", 0.5, "one group of 100: ≥ 0.5x Centrifugo"),
            ("connect", "centrifugo", 0.5, "connection set-up (10,000): ≥ 0.5x Centrifugo")):
        measured = ratio(results, key, peer)
        if measured is not None:
            n = min(len(row_values(results, ROW[key], s)) for s in ("groupcast", peer))
            out.append(judged(name, measured["ratio"], measured["ratio"] >= floor, n))
    memory = row_stats(results, "idle-memory", "groupcast")
    if memory:
        out.append(judged("idle memory per connection (10,000): ≤ 16 kB", memory["median"],
                          memory["median"] <= 16, memory["n"], "kB"))
    half = _phase_stat(results, "groupcast", HEADLINE[0], "half saturation",
                       lambda p: p["latency_ms"].get("p99"))
    if half:
        out.append(judged("p99 < 50 ms at half saturation (one group of 1,000)", half["median"],
                          half["median"] < 50, half["n"], "ms"))
    one = _phase_stat(results, "groupcast", "publish-probe-1", "publish probe",
                      lambda p: p["publish_latency_ms"].get("p50"))
    many = _phase_stat(results, "groupcast", "one-group-10000", "publish probe",
                       lambda p: p["publish_latency_ms"].get("p50"))
    if one and many and one["median"]:
        growth = many["median"] / one["median"]
        out.append(judged("HTTP publish p50 at 10,000 subscribers within 1.5x of 1", growth,
                          growth <= 1.5, min(one["n"], many["n"])))
    out += scaling.cost_targets(results)
    return out


def _ms(summary, key):
    value = (summary or {}).get(key)
    return "–" if value is None else (f"{value:.1f}" if value >= 10 else f"{value:.2f}")


def _n(value, digits=0):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def _label(result):
    """The system, and the Redis topology it ran on when not the run's shared one."""
    redis = result.get("redis")
    return f"{result['system']} ({topology_title(redis)})" if redis else result["system"]


def _systems(results):
    present = {r["system"] for r in results}
    return [s for s in ORDER if s in present] + sorted(present - set(ORDER))


def lost_label(phase):
    late = phase.get("arrived_after_drain")
    if not late or not phase["lost"]:
        return _n(phase["lost"])
    return f"{_n(phase['lost'])} ({_n(min(late, phase['lost']))} arrived after the drain)"


def phase_label(phase):
    if phase["mode"] != "closed":
        return phase["name"]
    capped = "" if phase.get("latency_cap_met", True) else ", over the p99 cap"
    return f"{phase['name']} (W={phase['window']}{capped})"


def _spread(measured, digits=0):
    if measured is None:
        return "–"
    if measured["n"] < 2:
        return "1 run"
    spread = measured["spread_pct"]
    return (f"{_n(measured['min'], digits)}–{_n(measured['max'], digits)} "
            f"(±{spread / 2:.0f}%, n={measured['n']})" if spread is not None else "–")


def rows_markdown(results):
    """The summary rows: per system the median, the rounds' range, groupcast's ratio."""
    out = []
    if any(row_values(results, row, s) for row in ROWS for s in _systems(results)):
        out = ["## Rows (medians over the rounds)", "",
               "Each value is the median over the rounds of the scenario (1,000-connection rows: "
               "one per round, systems interleaved); the range is the rounds' min–max, ± half "
               "of it over the median. `groupcast is` = groupcast's median / the system's median "
               "(min–max of the per-round ratios, round r against round r).", ""]
    for row in ROWS:
        systems = [s for s in _systems(results) if row_values(results, row, s)]
        if not systems:
            continue
        digits = 1 if row["key"] == "idle-memory" else 0
        connecting = row["key"] in ("connect", "idle-memory")
        extra = " | at 1,000 clients: median of the rounds" if connecting else ""
        if row["key"] == "connect":
            extra = " | connect wall s" + extra
        ratio_label = "groupcast / system" if row["key"] == "idle-memory" else "groupcast is"
        out += [f"### {row['title']}", "",
                f"| system | {row['unit']} (median) | rounds: range | {ratio_label}{extra} |",
                "|---|---:|---:|---:|" + "---:|" * extra.count("|")]
        for system in systems:
            measured = stats(list(row_values(results, row, system).values()))
            cell = "" if system == "groupcast" else scaling.ratio_cell(ratio(results, row["key"], system), rounds="")
            more = ""
            if row["key"] == "connect":
                result = next(iter(_results_of(results, system, CONNECT_SCENARIO)), None)
                more += f" | {result['connect']['seconds']:.1f}" if result and result.get("connect") else " | –"
            if connecting:
                # the same measure at 1,000 clients, once per round of the headline scenario
                small = stats([row["value"](r, None) for r in _results_of(results, system, HEADLINE[0])])
                more += (f" | {_n(small['median'], digits)} ({_n(small['min'], digits)}–"
                         f"{_n(small['max'], digits)}, n={small['n']})" if small else " | –")
            out.append(f"| {system} | {_n(measured['median'], digits)} | {_spread(measured, digits)} "
                       f"| {cell}{more} |")
        if row["key"] == "sse":
            sse = median_of(results, "sse", "groupcast")
            ws = median_of(results, "one-group-1000", "groupcast")
            if sse and ws:
                out += ["", f"groupcast over SSE: {sse / ws:.2f}x its WebSocket figure "
                        f"({_n(sse)} vs {_n(ws)} deliveries per server CPU-s, medians)."]
        out.append("")
    checks = targets(results)
    if checks:
        out += ["## Targets (design.md), groupcast, on medians", "",
                "| target | groupcast | met | rounds |", "|---|---:|---|---:|"]
        for check in checks:
            value = check["value"]
            shown = f"{value:.2f}x" if check["unit"] == "x" else f"{value:.1f} {check['unit']}"
            out.append(f"| {check['target']} | {shown} | {'yes' if check['met'] else '**no**'} "
                       f"| {check['n']} |")
        out.append("")
    return out


def markdown(run):
    results = run["results"]
    meta = run["meta"]
    out = [f"# groupcast benchmark, {meta['started']}", ""]
    out.append(
        f"{meta['cores']} cores, {meta['memory_gb']} GB, Python {meta['python']}, "
        f"Redis {meta['redis_version']} (AOF, appendfsync everysec; one instance for every "
        f"scenario but those on Redis topologies, which start their own), "
        f"load generator: bench/loadgen (Go). Mode: {meta['mode']}, {meta.get('repeats', 1)} rounds "
        f"of the repeated scenarios. Wall time {meta['wall_s']:.0f} s."
    )
    out += ["", "Deliveries per server CPU-second: messages received by clients / CPU seconds of "
            "every server process (including Redis and the publish endpoint) during the phase. "
            "Loss never includes clients the server closed with 4008 (shown apart); "
            "deliveries that arrived after the 5 s drain are counted lost and shown in brackets.", ""]

    if any(r["scenario"] == HEADLINE[0] for r in results):
        out += [f"## Headline: {HEADLINE[0]}, {HEADLINE[1]} (medians over the rounds)", "",
                "| system | deliveries/s | deliveries per server CPU-s | rounds: range | windows | "
                "groupcast ratio | p99 ms | lost |",
                "|---|---:|---:|---:|---|---:|---:|---:|"]
        for system in _systems(results):
            per_cpu = row_stats(results, "one-group-1000", system)
            if per_cpu is None:
                out.append(f"| {system} | – | – | – | – | – | – | – |")
                continue
            rate = _phase_stat(results, system, *HEADLINE, lambda p: p["deliveries_per_s"])
            p99 = _phase_stat(results, system, *HEADLINE, lambda p: p["latency_ms"].get("p99"))
            lost = _phase_stat(results, system, *HEADLINE, lambda p: p["lost"])
            windows = _phase_stat(results, system, *HEADLINE, lambda p: p["window"])
            cell = "" if system == "groupcast" else scaling.ratio_cell(ratio(results, "one-group-1000", system), rounds="")
            out.append(f"| {system} | {_n(rate and rate['median'])} | {_n(per_cpu['median'])} | "
                       f"{_spread(per_cpu)} | {', '.join(str(w) for w in (windows or {}).get('values', []))} | "
                       f"{cell} | {_ms(p99, 'median')} | {_n(lost and sum(lost['values']))} |")
        out += ["", *small_groups_lines(results), *ratio_lines(results), ""]
    out += rows_markdown(results)
    out += scaling.cluster_markdown(results)
    out += scaling.shard_fanout_markdown(results)

    scenarios = []
    for result in results:
        if result["scenario"] not in [s for s, _ in scenarios]:
            scenarios.append((result["scenario"], result["title"]))
    for key, title in scenarios:
        out += [f"## {title} (`{key}`)", "",
                "| system | round | phase | published/s | deliveries/s | server cores | deliveries per server CPU-s "
                "| load gen CPU-s | other CPU-s | p50 ms | p99 ms | p99.9 ms | publish p50 / p99 ms | lost | "
                "missed by 4008 (clients) | skipped / failed publishes |",
                "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for system in _systems(results):
            for result in _results_of(results, system, key):
                round_number = result.get("round", 1)
                label = _label(result)
                if "error" in result and not result.get("phases"):
                    out.append(f"| {label} | {round_number} | **failed**: {result['error'][:120]} |"
                               + " |" * 13)
                    continue
                for p in result["phases"]:
                    closed = p.get("clients_closed_by_code", {}).get("4008", 0)
                    failed = sum(p.get("publish_errors", {}).values())
                    out.append(
                        f"| {label} | {round_number} | {phase_label(p)} | {_n(p['publish_rate'], 1)} "
                        f"| {_n(p['deliveries_per_s'])} "
                        f"| {p['server_cores']:.2f} | {_n(p['deliveries_per_server_cpu_s'])} "
                        f"| {p['loadgen_cpu_s']:.1f} | {p['other_cpu_s']:.1f} | {_ms(p['latency_ms'], 'p50')} "
                        f"| {_ms(p['latency_ms'], 'p99')} | {_ms(p['latency_ms'], 'p999')} "
                        f"| {_ms(p['publish_latency_ms'], 'p50')} / {_ms(p['publish_latency_ms'], 'p99')} "
                        f"| {lost_label(p)} | {_n(p['missed_by_4008_clients'])} ({closed}) "
                        f"| {p['publish_skipped']} / {failed} |")
                if "error" in result:
                    out.append(f"| {label} | {round_number} | **error** | {result['error'][:160]} |"
                               + " |" * 12)
        out.append("")

    out += ["## Idle memory and connection set-up, every scenario", "",
            "| system | scenario | round | connected | server RSS growth per connection (kB) | "
            "connect time s | connects per server CPU-s |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for system in _systems(results):
        for result in results:
            connect = result.get("connect")
            if result["system"] != system or not connect or result["connections"] < 1000:
                continue
            per = connect.get("rss_per_connection_bytes")
            out.append(f"| {_label(result)} | {result['scenario']} | {result.get('round', 1)} | "
                       f"{connect['connected']:,} | "
                       f"{_n(per / 1024 if per is not None else None, 1)} | {connect['seconds']:.1f} | "
                       f"{_n(connect.get('connects_per_server_cpu_s'))} |")
    out.append("")

    probes = [(result, p) for system in _systems(results) for result in results
              if result["system"] == system
              for p in result.get("phases", []) if p["name"] == "publish probe"]
    if probes:
        out += ["## HTTP publish latency (publish probe, 2 messages/s)", "",
                "| system | subscribers | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|"]
        for result, p in probes:
            s = p["publish_latency_ms"]
            out.append(f"| {result['system']} | {result['connections']:,} | {_ms(s, 'p50')} | "
                       f"{_ms(s, 'p99')} | {_ms(s, 'max')} |")
        out.append("")

    errors = [r for r in results if "error" in r]
    if errors:
        out += ["## Errors", ""]
        for r in errors:
            out.append(f"- {r['system']} / {r['scenario']} (round {r.get('round', 1)}): {r['error']}")
        out.append("")
    return "\n".join(out)


def _one_group_points(results, system, phase, value):
    """(connections, median, min, max) for every one-group WebSocket scenario."""
    by_connections = {}
    for result in results:
        if (result["system"] != system or result["groups"] != 1 or result["connections"] < 100
                or result.get("transport", "ws") != "ws"):
            continue
        measured = next((p for p in result.get("phases", []) if p["name"] == phase), None)
        if measured is not None and value(measured):
            by_connections.setdefault(result["connections"], []).append(value(measured))
    return [(n, statistics.median(v), min(v), max(v)) for n, v in sorted(by_connections.items())]


def plots(run, prefix):
    """Three PNGs: deliveries per server CPU-s and p99 against connections in one group
    (medians, the rounds' range as error bars), and the summary rows per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = run["results"]
    paths = []
    charts = [
        ("deliveries-per-cpu", "deliveries per server CPU-second (saturation)",
         [("saturation", lambda p: p.get("deliveries_per_server_cpu_s"))]),
        ("p99", "publish→receive p99 latency (ms)",
         [("10/s", lambda p: p["latency_ms"].get("p99")),
          ("saturation", lambda p: p["latency_ms"].get("p99"))]),
    ]
    for name, ylabel, series in charts:
        figure, axes = plt.subplots(1, len(series), figsize=(6.5 * len(series), 4.5), squeeze=False)
        for axis, (phase, value) in zip(axes[0], series):
            for system in _systems(results):
                points = _one_group_points(results, system, phase, value)
                if points:
                    x, median, low, high = zip(*points)
                    axis.errorbar(x, median, yerr=[[m - lo for m, lo in zip(median, low)],
                                                   [hi - m for m, hi in zip(median, high)]],
                                  marker="o", capsize=3, label=system)
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_xlabel("connections in one group")
            axis.set_ylabel(ylabel)
            axis.set_title(f"{phase} (repeated scenarios: median, bars: the rounds' range)",
                           fontsize=9)
            axis.grid(True, which="both", alpha=0.3)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=8)
        figure.tight_layout()
        path = prefix.with_name(f"{prefix.name}-{name}.png")
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    path = prefix.with_name(f"{prefix.name}-rows.png")
    if _rows_chart(plt, results, path):
        paths.append(path)
    return paths


def _rows_chart(plt, results, path):
    """Bars per system: deliveries per server CPU-s for each delivery row, connects per
    server CPU-s, idle kB per connection; medians with the rounds' min–max."""
    systems = _systems(results)
    panels = [
        ("deliveries per server CPU-second (saturation)", ["one-group-1000", "one-group-100",
                                                           "groups-of-10", "groups-of-10-ws", "sse"], True),
        ("connects per server CPU-second\n(10,000 clients)", ["connect"], True),
        ("server RSS per idle connection, kB\n(10,000 clients)", ["idle-memory"], False),
    ]
    labels = {"one-group-1000": "one group\nof 1,000", "one-group-100": "one group\nof 100",
              "groups-of-10": "100 groups of 10\nHTTP publish",
              "groups-of-10-ws": "100 groups of 10\nWebSocket publish", "sse": "one group of 1,000\nSSE",
              "connect": "connection set-up", "idle-memory": "idle memory"}
    if not any(row_values(results, ROW[k], s) for _, keys, _ in panels for k in keys for s in systems):
        return False
    figure, axes = plt.subplots(1, 3, figsize=(17, 4.8), gridspec_kw={"width_ratios": [3, 1, 1]})
    width = 0.8 / max(1, len(systems))
    for axis, (title, keys, log) in zip(axes, panels):
        for index, system in enumerate(systems):
            xs, medians, low, high = [], [], [], []
            for position, key in enumerate(keys):
                measured = row_stats(results, key, system)
                if measured is None:
                    continue
                xs.append(position + (index - (len(systems) - 1) / 2) * width)
                medians.append(measured["median"])
                low.append(measured["median"] - measured["min"])
                high.append(measured["max"] - measured["median"])
            if xs:
                axis.bar(xs, medians, width, yerr=[low, high], capsize=2, label=system,
                         color=f"C{index}")
        axis.set_xticks(range(len(keys)))
        axis.set_xticklabels([labels[k] for k in keys], fontsize=8)
        axis.set_xlim(-0.5, len(keys) - 0.5)
        if log:
            axis.set_yscale("log")
        if keys == ["idle-memory"]:
            axis.axhline(16, color="grey", linestyle="--", linewidth=1, label="target ≤ 16 kB")
        axis.set_title(title, fontsize=9)
        axis.grid(True, axis="y", which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    target = [h for h, label in zip(*axes[2].get_legend_handles_labels()) if label.startswith("target")]
    axes[2].legend(target, ["target ≤ 16 kB (groupcast)"], fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write_json(run, path):
    path.write_text(json.dumps(run, indent=1, default=str))
