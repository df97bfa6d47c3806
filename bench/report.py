"""The run's outputs: JSON, the markdown table, the plots and the three ratio lines."""

import json

from bench.scenarios import HEADLINE

PEERS = ("centrifugo", "python-socketio", "stock channels")
ORDER = ("groupcast", "centrifugo", "python-socketio", "stock channels", "websockets ceiling")


def phase_of(results, system, scenario, phase):
    for result in results:
        if result["system"] == system and result["scenario"] == scenario:
            for measured in result.get("phases", []):
                if measured["name"] == phase:
                    return measured
    return None


def efficiency(results, system):
    measured = phase_of(results, system, *HEADLINE)
    return measured and measured.get("deliveries_per_server_cpu_s")


def headline_ratios(results):
    """Peer → groupcast's deliveries per server CPU-second divided by the peer's."""
    ours = efficiency(results, "groupcast")
    ratios = {}
    for peer in PEERS:
        theirs = efficiency(results, peer)
        ratios[peer] = ours / theirs if ours and theirs else None
    return ratios


def ratio_lines(results):
    lines = []
    for peer, ratio in headline_ratios(results).items():
        shown = f"{ratio:.2f}" if ratio is not None else "n/a"
        lines.append(f"groupcast vs {peer}: {shown}x deliveries per server CPU-second")
    return lines


def _ms(summary, key):
    value = (summary or {}).get(key)
    return "–" if value is None else (f"{value:.1f}" if value >= 10 else f"{value:.2f}")


def _n(value, digits=0):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


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


def markdown(run):
    results = run["results"]
    meta = run["meta"]
    out = [f"# groupcast benchmark, {meta['started']}", ""]
    out.append(
        f"{meta['cores']} cores, {meta['memory_gb']} GB, Python {meta['python']}, "
        f"Redis {meta['redis_version']} (AOF, appendfsync everysec, one instance for all), "
        f"load generator: bench/loadgen (Go). Mode: {meta['mode']}. Wall time {meta['wall_s']:.0f} s."
    )
    out += ["", "Deliveries per server CPU-second: messages received by clients / CPU seconds of "
            "every server process (including Redis and the publish endpoint) during the phase. "
            "Loss never includes clients the server closed with 4008 (shown apart); "
            "deliveries that arrived after the 5 s drain are counted lost and shown in brackets.", ""]

    out += [f"## Headline: {HEADLINE[0]}, {HEADLINE[1]}", "",
            "| system | deliveries/s | deliveries per server CPU-s | groupcast ratio | p99 ms | lost |",
            "|---|---:|---:|---:|---:|---:|"]
    ours = efficiency(results, "groupcast")
    for system in _systems(results):
        measured = phase_of(results, system, *HEADLINE)
        if measured is None:
            out.append(f"| {system} | – | – | – | – | – |")
            continue
        theirs = measured.get("deliveries_per_server_cpu_s")
        ratio = f"{ours / theirs:.2f}x" if ours and theirs and system != "groupcast" else ""
        out.append(f"| {system} | {_n(measured['deliveries_per_s'])} | {_n(theirs)} | {ratio} | "
                   f"{_ms(measured['latency_ms'], 'p99')} | {_n(measured['lost'])} |")
    out += ["", *ratio_lines(results), ""]

    scenarios = []
    for result in results:
        if result["scenario"] not in [s for s, _ in scenarios]:
            scenarios.append((result["scenario"], result["title"]))
    for key, title in scenarios:
        out += [f"## {title} (`{key}`)", "",
                "| system | phase | published/s | deliveries/s | server cores | deliveries per server CPU-s "
                "| load gen CPU-s | p50 ms | p99 ms | p99.9 ms | publish p50 / p99 ms | lost | "
                "missed by 4008 (clients) | skipped / failed publishes |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for system in _systems(results):
            result = next((r for r in results if r["system"] == system and r["scenario"] == key), None)
            if result is None:
                continue
            if "error" in result and not result.get("phases"):
                out.append(f"| {system} | **failed**: {result['error'][:120]} |" + " |" * 12)
                continue
            for p in result["phases"]:
                closed = p.get("clients_closed_by_code", {}).get("4008", 0)
                failed = sum(p.get("publish_errors", {}).values())
                out.append(
                    f"| {system} | {phase_label(p)} | {_n(p['publish_rate'], 1)} | {_n(p['deliveries_per_s'])} "
                    f"| {p['server_cores']:.2f} | {_n(p['deliveries_per_server_cpu_s'])} "
                    f"| {p['loadgen_cpu_s']:.1f} | {_ms(p['latency_ms'], 'p50')} "
                    f"| {_ms(p['latency_ms'], 'p99')} | {_ms(p['latency_ms'], 'p999')} "
                    f"| {_ms(p['publish_latency_ms'], 'p50')} / {_ms(p['publish_latency_ms'], 'p99')} "
                    f"| {lost_label(p)} | {_n(p['missed_by_4008_clients'])} ({closed}) "
                    f"| {p['publish_skipped']} / {failed} |")
            if "error" in result:
                out.append(f"| {system} | **error** | {result['error'][:160]} |" + " |" * 11)
        out.append("")

    out += ["## Idle memory and connection set-up", "",
            "| system | scenario | connected | server RSS growth per connection (kB) | connect time s |",
            "|---|---|---:|---:|---:|"]
    for system in _systems(results):
        for result in results:
            connect = result.get("connect")
            if result["system"] != system or not connect or result["connections"] < 1000:
                continue
            per = connect.get("rss_per_connection_bytes")
            out.append(f"| {system} | {result['scenario']} | {connect['connected']:,} | "
                       f"{_n(per / 1024 if per is not None else None, 1)} | {connect['seconds']:.1f} |")
    out.append("")

    out += ["## HTTP publish latency (publish probe, 2 messages/s)", "",
            "| system | subscribers | p50 ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|"]
    for system in _systems(results):
        for result in results:
            if result["system"] != system:
                continue
            for p in result.get("phases", []):
                if p["name"] == "publish probe":
                    s = p["publish_latency_ms"]
                    out.append(f"| {system} | {result['connections']:,} | {_ms(s, 'p50')} | "
                               f"{_ms(s, 'p99')} | {_ms(s, 'max')} |")
    out.append("")

    errors = [r for r in results if "error" in r]
    if errors:
        out += ["## Errors", ""]
        for r in errors:
            out.append(f"- {r['system']} / {r['scenario']}: {r['error']}")
        out.append("")
    return "\n".join(out)


def plots(run, prefix):
    """Two PNGs: deliveries per server CPU-s and p99 vs connections (one group)."""
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
                points = []
                for result in results:
                    if result["system"] != system or result["groups"] != 1 or result["connections"] < 100:
                        continue
                    measured = next((p for p in result.get("phases", []) if p["name"] == phase), None)
                    if measured is not None and value(measured):
                        points.append((result["connections"], value(measured)))
                if points:
                    points.sort()
                    axis.plot(*zip(*points), marker="o", label=system)
            axis.set_xscale("log")
            axis.set_yscale("log")
            axis.set_xlabel("connections in one group")
            axis.set_ylabel(ylabel)
            axis.set_title(f"{phase}")
            axis.grid(True, which="both", alpha=0.3)
            if axis.get_legend_handles_labels()[0]:
                axis.legend(fontsize=8)
        figure.tight_layout()
        path = prefix.with_name(f"{prefix.name}-{name}.png")
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


def write_json(run, path):
    path.write_text(json.dumps(run, indent=1, default=str))
