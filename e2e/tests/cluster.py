"""The kind cluster under test, as the scenarios see it: kubectl, helm and port-forwards.

e2e/run.sh creates the cluster and installs the chart, then runs pytest with the
environment below; nothing here creates or deletes the cluster.
"""

import json
import os
import re
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field


class ClusterError(AssertionError):
    """A kubectl/helm call failed or a wait ran out of time."""


def env(name):
    value = os.environ.get(name)
    if not value:
        raise ClusterError(f"{name} is not set: run the scenarios through e2e/run.sh")
    return value


def stop_process(process, timeout=5):
    """SIGTERM, then SIGKILL if it is still running after `timeout` seconds; reaped either way."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


@dataclass
class Cluster:
    kubectl_bin: str
    helm_bin: str
    kubeconfig: str
    namespace: str
    release: str
    chart: str
    pid_file: str
    http_url: str
    ws_url: str
    values_file: str
    install_args: list
    _forwards: list = field(default_factory=list)

    @classmethod
    def from_env(cls):
        return cls(
            kubectl_bin=env("E2E_KUBECTL"),
            helm_bin=env("E2E_HELM"),
            kubeconfig=env("KUBECONFIG"),
            namespace=env("E2E_NAMESPACE"),
            release=env("E2E_RELEASE"),
            chart=env("E2E_CHART"),
            pid_file=env("E2E_PORT_FORWARD_PIDS"),
            http_url=env("E2E_HTTP_URL"),
            ws_url=env("E2E_WS_URL"),
            values_file=env("E2E_VALUES"),
            # what run.sh gave `helm install`, so an upgrade renders the same release
            install_args=["--set", f"image.tag={env('E2E_IMAGE_TAG')}", *shlex.split(os.environ.get("E2E_HELM_ARGS", ""))],
        )

    # --- kubectl / helm ----------------------------------------------------------------

    def kubectl(self, *args, timeout=120, check=True):
        return self._run([self.kubectl_bin, "-n", self.namespace, *args], timeout, check)

    def helm(self, *args, timeout=300):
        return self._run([self.helm_bin, "-n", self.namespace, *args], timeout, True)

    def _run(self, argv, timeout, check):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            raise ClusterError(f"timed out after {timeout} s: {' '.join(argv)}") from error
        if check and done.returncode != 0:
            raise ClusterError(f"{' '.join(argv)} -> rc {done.returncode}\n{done.stderr.strip()}")
        return done.stdout

    def upgrade(self, *args, timeout=240):
        """`helm upgrade --wait` of the release with the install's values plus `args`.

        Not --reuse-values: that round-trips every value through JSON, and integers come
        back as floats (1048576 -> 1.048576e+06 in the rendered ConfigMap).
        """
        return self.helm(
            "upgrade", self.release, self.chart, "-f", self.values_file, *self.install_args, *args,
            "--wait", f"--timeout={timeout}s", "--hide-notes", timeout=timeout + 30,
        )

    def get_json(self, *args):
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def secret_value(self, name, key):
        import base64

        data = self.get_json("secret", name)["data"]
        return base64.b64decode(data[key]).decode()

    # --- the chart's objects -------------------------------------------------------------

    def component_selector(self, component):
        return f"app.kubernetes.io/instance={self.release},app.kubernetes.io/component={component}"

    def deployment_name(self, component):
        found = self.get_json("deployment", "-l", self.component_selector(component))["items"]
        if len(found) != 1:
            raise ClusterError(f"expected one {component} Deployment, found {len(found)}")
        return found[0]["metadata"]["name"]

    def service_name(self, component):
        found = self.get_json("service", "-l", self.component_selector(component))["items"]
        if len(found) != 1:
            raise ClusterError(f"expected one {component} Service, found {len(found)}")
        return found[0]["metadata"]["name"]

    def ready_pods(self, component):
        """Names of the component's pods that are Ready and not terminating."""
        pods = self.get_json("pods", "-l", self.component_selector(component))["items"]
        ready = []
        for pod in pods:
            if pod["metadata"].get("deletionTimestamp"):
                continue
            conditions = pod.get("status", {}).get("conditions", [])
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                ready.append(pod["metadata"]["name"])
        return sorted(ready)

    def all_pods(self, component):
        pods = self.get_json("pods", "-l", self.component_selector(component))["items"]
        return sorted(p["metadata"]["name"] for p in pods)

    def wait_rollout(self, component, timeout=240):
        name = self.deployment_name(component)
        self.kubectl("rollout", "status", f"deployment/{name}", f"--timeout={timeout}s", timeout=timeout + 10)

    def wait_pods(self, component, count, timeout=240):
        """Until exactly `count` pods of the component exist and all are Ready."""
        deadline = time.monotonic() + timeout
        while True:
            ready, every = self.ready_pods(component), self.all_pods(component)
            if len(ready) == count and len(every) == count:
                return ready
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{component}: wanted {count} ready pods, have {len(ready)} ready of {len(every)} after {timeout} s"
                )
            time.sleep(1)

    def wait_replaced(self, pod, old_uid, timeout=180):
        """Until pod NAME exists again under a new uid and is Ready (a StatefulSet's pod)."""
        deadline = time.monotonic() + timeout
        while True:
            found = json.loads(self.kubectl("get", "pod", pod, "-o", "json", "--ignore-not-found") or "null")
            if found and found["metadata"]["uid"] != old_uid and not found["metadata"].get("deletionTimestamp"):
                conditions = found.get("status", {}).get("conditions", [])
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    return found
            if time.monotonic() > deadline:
                raise ClusterError(f"pod {pod} not replaced and Ready after {timeout} s")
            time.sleep(1)

    def exec(self, pod, *command, timeout=60):
        """A command in the pod's (first) container; its stdout."""
        return self.kubectl("exec", pod, "--", *command, timeout=timeout)

    def pod_ips(self, component):
        """Pod name -> pod IP of the component's pods that have one."""
        pods = self.get_json("pods", "-l", self.component_selector(component))["items"]
        return {p["metadata"]["name"]: p["status"]["podIP"] for p in pods if p.get("status", {}).get("podIP")}

    # --- port-forwards -------------------------------------------------------------------

    def port_forward(self, target, port):
        """A loopback port forwarded to `target` (pod/NAME or svc/NAME); stopped by stop_forwards()."""
        forward = PortForward(self, target, port)
        self._forwards.append(forward)
        return forward

    def stop_forwards(self):
        while self._forwards:
            self._forwards.pop().stop()


class PortForward:
    """`kubectl port-forward TARGET :PORT` on 127.0.0.1, its local port parsed from its output.

    kubectl port-forward exits as a whole when one forwarded connection ends in a reset
    ("lost connection to pod", kubernetes/kubernetes#74551) -- a server closing a banned
    client does that. A client of a real Service would only see its own connection end, so
    the forward is started again on the same local port and the clients reconnect as usual."""

    LINE = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")

    def __init__(self, cluster, target, port, timeout=30):
        self.cluster, self.target, self.port = cluster, target, port
        self.local_port = None
        self.output = []
        self.restarts = 0
        self._stopped = threading.Event()
        self.process = self._start(f":{port}", timeout)
        threading.Thread(target=self._keep, daemon=True).start()

    def _start(self, ports, timeout):
        process = subprocess.Popen(
            [self.cluster.kubectl_bin, "-n", self.cluster.namespace, "port-forward", "--address",
             "127.0.0.1", self.target, ports],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        with open(self.cluster.pid_file, "a") as pids:
            pids.write(f"{process.pid}\n")
        found = threading.Event()

        def read():
            for line in process.stdout:
                self.output.append(line.rstrip())
                match = self.LINE.search(line)
                if match:
                    self.local_port = int(match.group(1))
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(timeout):
            process.kill()
            process.wait(5)
            raise ClusterError(f"port-forward to {self.target} did not start: {self.output[-10:]}")
        return process

    def _keep(self):
        while not self._stopped.is_set():
            self.process.wait()
            if self._stopped.is_set():
                return
            try:  # the same local port, so clients that know it reconnect
                self.process = self._start(f"{self.local_port}:{self.port}", 30)
                self.restarts += 1
            except ClusterError:
                if self._stopped.wait(1):
                    return

    @property
    def alive(self):
        return self.process.poll() is None

    def stop(self):
        self._stopped.set()
        if self.process.poll() is None:
            stop_process(self.process)
