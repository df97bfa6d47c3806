"""The shipped Grafana dashboard is generated from hack/dashboard.py and covers the issue's panels."""

import importlib.util
import json

from devstack import ROOT


def load_generator():
    spec = importlib.util.spec_from_file_location("dashboard", ROOT / "hack/dashboard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_dashboard_is_up_to_date():
    generator = load_generator()
    assert generator.OUT.read_text() == generator.render(), "run: python hack/dashboard.py"


def test_dashboard_is_templated_by_namespace_and_pod_and_uses_only_groupcast_metrics():
    board = json.loads((ROOT / "charts/groupcast/files/dashboard.json").read_text())
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["datasource", "namespace", "pod"]
    for panel in board["panels"]:
        for target in panel["targets"]:
            assert 'namespace=~"$namespace"' in target["expr"], panel["title"]
            assert "groupcast_" in target["expr"], panel["title"]
    titles = {p["title"] for p in board["panels"]}
    for wanted in ("Publishes/s", "Deliveries/s", "Fan-out ratio (deliveries per publish)",
                   "Connections per socket pod", "Subscriptions per socket pod",
                   "Delivery lag (publish to write)", "Drops by reason (recoverable by offset)",
                   "Disconnects by close code", "Jobs finished by status", "Job queue depth",
                   "Redis up, by role"):
        assert wanted in titles
