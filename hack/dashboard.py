#!/usr/bin/env python3
"""Writes charts/groupcast/files/dashboard.json, the Grafana dashboard of group fan-out.

The panels are declared here once; `python hack/dashboard.py` regenerates the JSON and a
test fails when the committed file is stale. Every query is filtered by the dashboard's
$namespace and (for per-pod panels) $pod variables.
"""

import json
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "charts/groupcast/files/dashboard.json"
NS = 'namespace=~"$namespace"'
POD = 'namespace=~"$namespace", pod=~"$pod"'
RATE = "[$__rate_interval]"

# (title, unit, [(legend, expr)], width)
PANELS = [
    ("Publishes/s", "ops", [("publishes", f"sum(rate(groupcast_publish_total{{{NS}}}{RATE}))")], 8),
    ("Deliveries/s", "ops", [("frames written", f"sum(rate(groupcast_deliveries_total{{{NS}}}{RATE}))")], 8),
    ("Fan-out ratio (deliveries per publish)", "short", [(
        "deliveries / publish",
        f"sum(rate(groupcast_deliveries_total{{{NS}}}{RATE})) / sum(rate(groupcast_publish_total{{{NS}}}{RATE}))",
    )], 8),
    ("Connections per socket pod", "short", [("{{pod}}", f"sum by (pod) (groupcast_connections{{{POD}}})")], 12),
    ("Subscriptions per socket pod", "short", [("{{pod}}", f"sum by (pod) (groupcast_subscriptions{{{POD}}})")], 12),
    ("Delivery lag (publish to write)", "s", [
        ("p50", f"histogram_quantile(0.5, sum by (le) (rate(groupcast_delivery_lag_seconds_bucket{{{POD}}}{RATE})))"),
        ("p99", f"histogram_quantile(0.99, sum by (le) (rate(groupcast_delivery_lag_seconds_bucket{{{POD}}}{RATE})))"),
    ], 12),
    ("Fan-out time per message (p99, per pod)", "s", [(
        "{{pod}}",
        f"histogram_quantile(0.99, sum by (pod, le) (rate(groupcast_fanout_seconds_bucket{{{POD}}}{RATE})))",
    )], 12),
    ("Drops by reason (recoverable by offset)", "ops", [
        ("{{reason}}", f"sum by (reason) (rate(groupcast_dropped_total{{{NS}}}{RATE}))"),
    ], 12),
    ("Disconnects by close code", "ops", [
        ("{{code}}", f"sum by (code) (rate(groupcast_disconnects_total{{{NS}}}{RATE}))"),
    ], 12),
    ("Jobs finished by status", "ops", [
        ("{{status}}", f"sum by (status) (rate(groupcast_jobs_total{{{NS}}}{RATE}))"),
    ], 8),
    ("Job queue depth", "short", [("waiting jobs", f"max(groupcast_job_queue_depth{{{NS}}})")], 8),
    ("Redis up, by role", "short", [("{{role}}", f"min by (role) (groupcast_redis_up{{{NS}}})")], 8),
    ("Publish latency (http)", "s", [
        ("p99", f"histogram_quantile(0.99, sum by (le) (rate(groupcast_publish_seconds_bucket{{{NS}}}{RATE})))"),
    ], 12),
    ("HTTP requests by status", "reqps", [
        ("{{view}} {{status}}", f"sum by (view, status) (rate(groupcast_http_requests_total{{{NS}}}{RATE}))"),
    ], 12),
]


def panel(number, title, unit, targets, width, x, y):
    return {
        "id": number,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (legend, expr) in enumerate(targets)
        ],
    }


def variable(name, query):
    return {
        "name": name,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": name},
        "definition": query,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
    }


def dashboard():
    panels, x, y = [], 0, 0
    for number, (title, unit, targets, width) in enumerate(PANELS, start=1):
        if x + width > 24:
            x, y = 0, y + 8
        panels.append(panel(number, title, unit, targets, width, x, y))
        x += width
    return {
        "title": "groupcast: group fan-out",
        "uid": "groupcast",
        "description": "Publishes, fan-out, delivery lag, drops and jobs of a groupcast deployment.",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "tags": ["groupcast"],
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "current": {}},
                variable("namespace", "label_values(groupcast_redis_up, namespace)"),
                variable("pod", 'label_values(groupcast_connections{namespace=~"$namespace"}, pod)'),
            ]
        },
        "panels": panels,
    }


def render():
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}")
