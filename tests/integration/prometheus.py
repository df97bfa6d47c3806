"""A real Prometheus (Debian's) scraping a local Stack: the labels mimic Kubernetes service
discovery (namespace, pod), so the dashboard's and the alerts' queries run unchanged."""

import json
import re
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from devstack import ROOT, free_port, http_status, wait_until

ALERTS = ROOT / "charts/groupcast/files/alerts.yaml"
DASHBOARD = ROOT / "charts/groupcast/files/dashboard.json"


def dashboard_queries(rate_interval="30s"):
    """(panel title, PromQL) of every dashboard target, with the template variables filled in."""
    board = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = (
                target["expr"]
                .replace("$__rate_interval", rate_interval)
                .replace('"$namespace"', '".*"')
                .replace('"$pod"', '".*"')
            )
            queries.append((panel["title"], expr))
    return queries


def alert_rules():
    import yaml

    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def measure(expr):
    """The quantity an alert compares: its expression without the trailing threshold."""
    expr = expr.split(" and ")[0]
    return re.sub(r"\s*(==|>|<|>=|<=)\s*[\d.]+\s*$", "", expr)


class Prometheus:
    def __init__(self, stack, rules=None):
        self.stack = stack
        self.directory = Path(tempfile.mkdtemp(prefix="groupcast-prometheus-"))
        self.port = free_port()
        self.rules = rules
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _targets(self):
        stack = self.stack
        yield "groupcast-http", f"127.0.0.1:{stack.http_port}", "http-0"
        for index, port in enumerate(stack.socket_ports):
            yield "groupcast-socket", f"127.0.0.1:{port}", f"socket-{index}"
        for index, port in enumerate(stack.worker_ports):
            yield "groupcast-worker", f"127.0.0.1:{port}", f"worker-{index}"

    def config(self):
        jobs = {}
        for job, target, pod in self._targets():
            jobs.setdefault(job, []).append(
                {"targets": [target], "labels": {"namespace": "local", "pod": pod}}
            )
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": job, "static_configs": statics} for job, statics in jobs.items()
            ],
        }
        if self.rules:
            rules_file = self.directory / "rules.yaml"
            rules_file.write_text(self.rules)
            config["rule_files"] = [str(rules_file)]
        return config

    def start(self):
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed (make installs Debian's)")
        config_file = self.directory / "prometheus.yml"
        config_file.write_text(json.dumps(self.config()))  # JSON is YAML
        self.process = subprocess.Popen(
            [binary, f"--config.file={config_file}", f"--storage.tsdb.path={self.directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdout=open(self.directory / "prometheus.log", "ab"), stderr=subprocess.STDOUT,
        )
        wait_until(lambda: http_status(f"{self.url}/-/ready") == 200, 30, "Prometheus to be ready")
        return self

    def query(self, expr, at=None):
        params = {"query": expr}
        if at is not None:
            params["time"] = str(at)
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def query_range(self, expr, start, end, step):
        params = {"query": expr, "start": start, "end": end, "step": step}
        url = f"{self.url}/api/v1/query_range?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]["result"]

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)
        shutil.rmtree(self.directory, ignore_errors=True)
