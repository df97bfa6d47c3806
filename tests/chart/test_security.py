"""Static security scan of the rendered chart with checkov (pinned, from PyPI)."""

import json
import subprocess
from pathlib import Path

import yaml

from .manifests import CRD_APIS, tool

ACCEPTED = yaml.safe_load((Path(__file__).parent / "checkov-accepted.yaml").read_text())
EVERYTHING_ON = {
    "http": {"autoscaling": {"enabled": True}},
    "socket": {"autoscaling": {"enabled": True}},
    # KEDA's ScaledObject makes the workers' HPA (the chart refuses both at once)
    "worker": {"keda": {"enabled": True, "serverAddress": "http://prometheus-operated.monitoring:9090"}},
    "ingress": {"enabled": True, "className": "nginx", "host": "groupcast.example.com"},
    "httpRoute": {"enabled": True, "parentRefs": [{"name": "public"}], "hostnames": ["groupcast.example.com"]},
    "networkPolicy": {"enabled": True},
    "monitoring": {k: {"enabled": True} for k in ("serviceMonitor", "podMonitor", "prometheusRule", "dashboard")},
}


def test_checkov_finds_nothing_unaccepted(render, tmp_path):
    checkov = tool("chart-tools.sh", "checkov")
    # the single Redis, and apart (the chart renders one or the other) the Redis Cluster
    (tmp_path / "manifests.yaml").write_text(yaml.safe_dump_all(render(EVERYTHING_ON, *CRD_APIS)))
    cluster = [doc for doc in render({**EVERYTHING_ON, "redis": {"cluster": {"enabled": True}}}, *CRD_APIS)
               if doc["metadata"]["labels"]["app.kubernetes.io/component"].startswith("redis-cluster")]
    assert cluster
    (tmp_path / "redis-cluster.yaml").write_text(yaml.safe_dump_all(cluster))
    # --skip-download: no calls to the vendor's API (unreachable here, and not needed).
    done = subprocess.run(
        [checkov, "-d", str(tmp_path), "--framework", "kubernetes", "--skip-download", "--quiet",
         "--compact", "--output", "json"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 100
    failed = {}
    for check in report["results"].get("failed_checks", []):
        failed.setdefault(check["check_id"], []).append(check["resource"].split(".")[0:3])
    unaccepted = {k: v for k, v in failed.items() if k not in ACCEPTED}
    assert not unaccepted, f"new checkov findings (fix them or justify in checkov-accepted.yaml): {unaccepted}"
    stale = set(ACCEPTED) - set(failed)
    assert not stale, f"accepted findings that no longer fire; remove them from checkov-accepted.yaml: {stale}"
