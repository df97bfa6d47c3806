"""Fixtures of the e2e scenarios: the cluster, the API with the chart's key, the run report."""

import json
import logging
import os
import uuid

import pytest

from cluster import Cluster
from client import Api

log = logging.getLogger("e2e")


@pytest.fixture(scope="session")
def cluster():
    cluster = Cluster.from_env()
    yield cluster
    cluster.stop_forwards()


@pytest.fixture(scope="session")
def api_key(cluster):
    """The first key of GROUPCAST_API_KEYS in the Secret the chart generated."""
    secret = f"{cluster.release}" if "groupcast" in cluster.release else f"{cluster.release}-groupcast"
    return cluster.secret_value(secret, "GROUPCAST_API_KEYS").split(",")[0].strip()


@pytest.fixture(scope="session")
def api(cluster, api_key):
    """The HTTP API through the e2e NodePort Service (any ready http pod)."""
    return Api(cluster.http_url, api_key)


@pytest.fixture
def forwards(cluster):
    """Port-forwards opened by one test, stopped when it ends."""
    opened = []

    def open_forward(target, port):
        forward = cluster.port_forward(target, port)
        opened.append(forward)
        return forward

    yield open_forward
    for forward in opened:
        forward.stop()


class Report:
    """Per-scenario numbers (messages sent, received, ...) for the run log."""

    def __init__(self):
        self.scenarios = {}

    def add(self, scenario, **numbers):
        self.scenarios.setdefault(scenario, {}).update(numbers)
        log.info("%s: %s", scenario, ", ".join(f"{k}={v}" for k, v in numbers.items()))


@pytest.fixture(scope="session")
def report(cluster):
    report = Report()
    yield report
    try:  # restarts say more than a green run: a role that crashed and came back
        pods = cluster.get_json("pods")["items"]
        report.add("pod restarts", **{
            p["metadata"]["name"]: sum(c.get("restartCount", 0) for c in p["status"].get("containerStatuses", []))
            for p in pods
        })
    except Exception as error:
        log.warning("could not list pod restarts: %s", error)
    path = os.environ.get("E2E_REPORT")
    if path:
        with open(path, "w") as out:
            json.dump(report.scenarios, out, indent=2, sort_keys=True)
        with open(os.path.splitext(path)[0] + ".txt", "w") as out:
            out.write("scenario numbers:\n")
            for scenario, numbers in report.scenarios.items():
                out.write(f"  {scenario}: " + ", ".join(f"{k}={v}" for k, v in numbers.items()) + "\n")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed scenario's pod logs and events, taken as it fails: run.sh dumps the cluster
    only at the end, when later scenarios have replaced the pods (and their logs) it used."""
    report = yield
    where = os.environ.get("E2E_DIAG")
    if report.when == "call" and report.failed and where:
        try:
            _dump(Cluster.from_env(), os.path.join(where, item.name))
        except Exception as error:  # diagnostics must not hide the failure itself
            log.warning("could not dump diagnostics of %s: %s", item.name, error)
    return report


def _dump(cluster, directory):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "events.txt"), "w") as out:
        out.write(cluster.kubectl("get", "events", "--sort-by=.lastTimestamp", check=False, timeout=60))
    with open(os.path.join(directory, "pods.txt"), "w") as out:
        out.write(cluster.kubectl("get", "pods", "-o", "wide", check=False, timeout=60))
    for pod in cluster.get_json("pods")["items"]:
        name = pod["metadata"]["name"]
        for previous in (False, True):
            text = cluster.kubectl("logs", name, "--all-containers", "--prefix", "--timestamps", "--tail=3000",
                                   *(["--previous"] if previous else []), check=False, timeout=60)
            if text:
                with open(os.path.join(directory, f"logs-{name}{'.previous' if previous else ''}.txt"), "w") as out:
                    out.write(text)
    log.info("diagnostics of the failure in %s", directory)


def unique(prefix):
    """A group name of its own for each scenario run."""
    return f"e2e.{prefix}.{uuid.uuid4().hex[:8]}"
