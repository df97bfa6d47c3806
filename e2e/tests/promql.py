"""PromQL taken from the chart's files/dashboard.json and files/alerts.yaml, ready to query."""

import json
import re

import yaml

# Grafana's built-in interval variables, as a dashboard on a 2 s scrape would resolve them
GRAFANA_INTERVALS = {"__rate_interval": "1m", "__interval": "10s", "__range": "5m", "__auto_interval": "10s"}


def dashboard_queries(path):
    """(title, expr) of every panel target, template variables replaced by match-all."""
    with open(path) as source:
        dashboard = json.load(source)
    variables = [v.get("name") for v in dashboard.get("templating", {}).get("list", []) if v.get("name")]
    queries = []

    def walk(panels):
        for panel in panels:
            for target in panel.get("targets", []):
                if target.get("expr"):
                    queries.append((panel.get("title", "?"), resolve(target["expr"], variables)))
            walk(panel.get("panels", []))

    walk(dashboard.get("panels", []))
    return queries


def resolve(expr, variables):
    for name, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace(f"${{{name}}}", ".*").replace(f"${name}", ".*")
    # a match-all variable under `=` must become a regex match
    return re.sub(r'(\w+)\s*=\s*"\.\*"', r'\1=~".*"', expr)


def alert_rules(path):
    """(alert name, expr) of every alerting rule."""
    with open(path) as source:
        rules = yaml.safe_load(source)
    return [
        (rule.get("alert") or rule.get("record"), rule["expr"])
        for group in rules.get("groups", [])
        for rule in group.get("rules", [])
    ]


def without_threshold(expr):
    """The left side of a top-level comparison (`rate(x[5m]) > 0.1` -> `rate(x[5m])`), else expr.

    An alert that is not firing returns nothing; its left side must still return data, or
    the alert watches series that do not exist.
    """
    depth, quote, i = 0, None, 0
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and (expr.startswith(("==", "!=", ">=", "<="), i) or c in "<>"):
            return expr[:i].strip()
        i += 1
    return expr.strip()
