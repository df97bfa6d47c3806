"""Scenario 7: a real Prometheus scrapes every role and the chart's PromQL returns data.

Prometheus (Debian's package) runs on the host on loopback and scrapes each pod of each
role through its own port-forward, with the labels a ServiceMonitor would give (job = the
Service's name, namespace, pod, service, container). The alert rules of files/alerts.yaml
are loaded as Prometheus rule files and must evaluate cleanly; every dashboard query, and
the left side of every alert's threshold, must return data.
"""

import asyncio
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from client import Subscriber
from cluster import stop_process
from conftest import unique
from promql import alert_rules, dashboard_queries, without_threshold

PORTS = {"http": 8000, "socket": 8001, "worker": 9102}


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prom_get(base, path, **params):
    url = f"{base}{path}?{urllib.parse.urlencode(params)}" if params else base + path
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.fixture
def prometheus(cluster, forwards, tmp_path):
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus package is not installed (e2e/toolchain.sh installs it)"
    scrape_configs, targets = [], 0
    for component, port in PORTS.items():
        cluster.wait_rollout(component, 180)  # e.g. a worker still in back-off after scenario 6
        service = cluster.service_name(component)
        static = []
        for pod in cluster.ready_pods(component):
            forward = forwards(f"pod/{pod}", port)
            static.append({
                "targets": [f"127.0.0.1:{forward.local_port}"],
                "labels": {"namespace": cluster.namespace, "pod": pod, "service": service, "container": component},
            })
            targets += 1
        scrape_configs.append({"job_name": service, "metrics_path": "/metrics", "static_configs": static})
    alerts = os.path.join(cluster.chart, "files", "alerts.yaml")
    shutil.copy(alerts, tmp_path / "alerts.yaml")
    config = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "rule_files": [str(tmp_path / "alerts.yaml")],
        "scrape_configs": scrape_configs,
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=open(tmp_path / "prometheus.log", "w"), stderr=subprocess.STDOUT,
    )
    with open(cluster.pid_file, "a") as pids:
        pids.write(f"{process.pid}\n")
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/-/ready", timeout=2)
                break
            except OSError:
                assert process.poll() is None, (tmp_path / "prometheus.log").read_text()
                assert time.monotonic() < deadline, "Prometheus not ready after 60 s"
                time.sleep(0.5)
        yield base, targets
    finally:
        stop_process(process, 10)


async def wait_targets_up(base, expected, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        active = (await asyncio.to_thread(prom_get, base, "/api/v1/targets"))["data"]["activeTargets"]
        up = [t for t in active if t["health"] == "up"]
        if len(active) == expected and len(up) == expected:
            return active
        assert time.monotonic() < deadline, [(t["labels"].get("pod"), t["health"], t.get("lastError")) for t in active]
        await asyncio.sleep(1)


async def query(base, expr):
    answer = await asyncio.to_thread(prom_get, base, "/api/v1/query", query=expr)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


async def query_until_data(base, expr, timeout):
    deadline = time.monotonic() + timeout
    while not (result := await query(base, expr)) and time.monotonic() < deadline:
        await asyncio.sleep(2)
    return result


async def test_prometheus_scrapes_every_role_and_chart_promql_returns_data(api, cluster, prometheus, report):
    base, targets = prometheus
    active = await wait_targets_up(base, targets)
    jobs = {t["labels"]["job"] for t in active}
    assert jobs == {cluster.service_name(c) for c in PORTS}, jobs

    # traffic for the counters and histograms the queries read: subscribe, publish, a job
    group = unique("s7")
    subscriber = await Subscriber("s7", cluster.ws_url, api.token([group], sub="metrics"), [group]).start()
    try:
        for n in range(20):
            assert (await api.apublish(group, {"n": n})).status == 200
        job = await asyncio.to_thread(api.request, "POST", "/api/v1/jobs", {"groups": [group], "data": {"job": 1}})
        assert job.status == 202, job
        await subscriber.wait_for(lambda: len(subscriber.offsets(group)) >= 21, 30, "the messages")

        # two scrapes after the traffic, so rate() over it has data
        await query_until_data(base, "sum(rate(groupcast_deliveries_total[1m])) > 0", 60)

        results, failed = {}, []
        for title, expr in dashboard_queries(os.path.join(cluster.chart, "files", "dashboard.json")):
            series = await query_until_data(base, expr, 4)
            results[f"dashboard: {title}: {expr}"] = len(series)
            if not series:
                failed.append(f"dashboard panel {title!r}: {expr}")
        for name, expr in alert_rules(os.path.join(cluster.chart, "files", "alerts.yaml")):
            await query(base, expr)  # must at least parse and run
            side = without_threshold(expr)
            series = await query_until_data(base, side, 4)
            results[f"alert: {name}: {side}"] = len(series)
            if not series:
                failed.append(f"alert {name}: {side}")

        rules = (await asyncio.to_thread(prom_get, base, "/api/v1/rules"))["data"]["groups"]
        unhealthy = [(r["name"], r.get("lastError")) for g in rules for r in g["rules"] if r.get("health") != "ok"]
        report.add(
            "7 metrics",
            targets=f"{len(active)} up ({', '.join(sorted(jobs))})",
            queries=len(results),
            with_data=sum(1 for n in results.values() if n),
            rules=sum(len(g["rules"]) for g in rules),
        )
        for key, count in results.items():
            print(f"{count:4d} series  {key}")
        assert not unhealthy, unhealthy
        assert not failed, "PromQL without data:\n" + "\n".join(failed)
    finally:
        await subscriber.stop()
