"""The whole topology on one machine: Redis, the http role (nginx front + gunicorn), Daphne
(socket) and runworker.

The local runner, not part of the product: `make run` runs `python -m devstack`; the
tests, the benchmark and the soak start a Stack on free ports. Redis is REDIS_URL when
given, else a private redis-server for the run.
"""

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0
# How long stop() gives every process, together, to exit on SIGTERM before killing what is
# left (a socket process drains for GROUPCAST_DRAIN_SECONDS, gunicorn for its graceful
# timeout; with no clients both are quick).
STOP_TIMEOUT = 20.0


class StackError(RuntimeError):
    """The stack cannot start; the message says why and what to do, no traceback needed."""


def port_taken(port):
    """True if something listens on 127.0.0.1:`port` (connections of a stopped server left in
    TIME_WAIT do not count: the servers bind with SO_REUSEADDR too)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def redis_problem(url, timeout=3.0):
    """None if the Redis at `url` answers PING within `timeout`, else what went wrong."""
    import redis

    if url.startswith("redis+sentinel://"):
        return None  # the service resolves Sentinel itself; its /readyz says if it cannot
    if "+cluster://" in url:
        from service.storage.clients import cluster_problem

        return cluster_problem(url, timeout)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as error:
        return str(error) or type(error).__name__
    return None


_handed_out = set()


def free_port():
    """A loopback port free now and never handed out before by this process: a stack's
    ports are all picked before its processes bind them, and the kernel may offer a port
    again as soon as the probe closes (a clean-clone run once gave the front's port to a
    worker's probe server too)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def stop_process(process, timeout=10):
    """SIGTERM, then SIGKILL if it is still running after `timeout` seconds; reaped either way."""
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until(predicate, timeout, what):
    """Poll `predicate` until it holds; raise TimeoutError naming `what` if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def http_body(url):
    """The body of a GET, whatever its status, or None without an answer."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode(errors="replace").strip()
    except urllib.error.HTTPError as error:
        return error.read().decode(errors="replace").strip()
    except OSError:
        return None


def dev_secrets(path):
    """Secrets for local runs, generated once and kept in `path` (git-ignored)."""
    values = {}
    if path.exists():
        for line in path.read_text().splitlines():
            name, _, value = line.partition("=")
            values[name] = value
    wanted = {
        "DJANGO_SECRET_KEY": lambda: secrets.token_urlsafe(48),
        "GROUPCAST_API_KEYS": lambda: "dev-" + secrets.token_urlsafe(24),
        "GROUPCAST_JWT_SECRET": lambda: secrets.token_urlsafe(48),
    }
    if not all(name in values for name in wanted):
        values = {name: make() for name, make in wanted.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        path.chmod(0o600)
    return values


class Redis:
    """A private redis-server on a free port, with append-only persistence in `directory`."""

    def __init__(self, directory, port=None, fsync="always"):
        self.directory = Path(directory)
        self.port = port or free_port()
        self.fsync = fsync
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (make installs it) and REDIS_URL is not set")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", self.fsync,
             "--dir", str(self.directory), "--protected-mode", "no"],
            stdout=open(self.directory / "redis.log", "ab"), stderr=subprocess.STDOUT,
            # its own session: a signal to the runner's process group reaches the runner,
            # which stops the roles first and Redis last
            start_new_session=True,
        )
        wait_until(self._answers, 10, f"redis-server on port {self.port}")

    def _answers(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self, sig=signal.SIGKILL):
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(10)

    stop = kill


class Stack:
    """Redis, the http role, N Daphne socket processes and M runworkers on loopback.

    The http role is as in a pod: the front (nginx, `python -m service.front`) on
    `http_port`, gunicorn behind it on `gunicorn_port`. The front's log is always a file,
    `front.log` in the work directory (one JSON line per request).
    """

    # what each port of a `make run` stack is set by, for messages
    PORT_VARIABLES = {"http": "GROUPCAST_HTTP_PORT", "socket": "GROUPCAST_SOCKET_PORT",
                      "worker": "GROUPCAST_METRICS_PORT"}

    def __init__(self, *, http_port=None, socket_ports=None, worker_ports=None,
                 redis_url=None, env=None, workdir=None, quiet=True, redis_cluster=False,
                 socket_args=()):
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="groupcast-"))
        # more options for the socket processes' Daphne (such as --ping-interval)
        self.socket_args = list(socket_args)
        self.http_port = http_port or free_port()
        self.gunicorn_port = free_port()
        self.socket_ports = list(socket_ports or [free_port()])
        self.worker_ports = list(worker_ports or [free_port()])
        if redis_url:
            self.redis = None
        elif redis_cluster:  # a private Redis Cluster (3 masters, 3 replicas)
            from devstack.redis_cluster import RedisCluster

            self.redis = RedisCluster(self.workdir / "redis-cluster")
        else:
            self.redis = Redis(self.workdir / "redis")
        self._redis_url = redis_url
        self.quiet = quiet
        self.processes = {}
        self.env = self._environment(env or {})

    @property
    def redis_url(self):
        return self._redis_url or self.redis.url

    @property
    def http_url(self):
        return f"http://127.0.0.1:{self.http_port}"

    def ws_url(self, index=0):
        return f"ws://127.0.0.1:{self.socket_ports[index]}/ws"

    @property
    def api_key(self):
        return self.env["GROUPCAST_API_KEYS"].split(",")[0]

    def _environment(self, overrides):
        env = dict(os.environ)
        env.update(dev_secrets(self.workdir / "secrets.env"))
        env.update({
            "DJANGO_SETTINGS_MODULE": "service.settings",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "GROUPCAST_ALLOWED_ORIGINS": f"http://127.0.0.1:{self.http_port},http://localhost:{self.http_port}",
            "GROUPCAST_WS_URL": self.ws_url(0),
            "GROUPCAST_METRICS_HOST": "127.0.0.1",
        })
        for name in ("DJANGO_SECRET_KEY", "GROUPCAST_API_KEYS", "GROUPCAST_JWT_SECRET"):
            if os.environ.get(name):
                env[name] = os.environ[name]
        env.update(overrides)
        return env

    def check_ports(self):
        """StackError naming each port already in use, and the variable that moves it."""
        wanted = [("http", self.http_port)] + [("socket", p) for p in self.socket_ports] \
            + [("worker", p) for p in self.worker_ports]
        taken = [(role, port) for role, port in wanted if port_taken(port)]
        if taken:
            listing = ", ".join(f"{port} ({role}; set {self.PORT_VARIABLES[role]} to move it)"
                                for role, port in taken)
            raise StackError(f"port {listing} already in use on 127.0.0.1: stop what holds it "
                             f"(`ss -ltnp 'sport = :{taken[0][1]}'` shows what), or choose another")

    def check_redis(self):
        problem = redis_problem(self._redis_url)
        if problem:
            raise StackError(f"REDIS_URL={self._redis_url} does not answer ({problem}): start that "
                             "Redis, or unset REDIS_URL and a private redis-server is started")

    def start(self):
        self.check_ports()
        if self.redis is not None:
            self.redis.start()
        else:
            self.check_redis()
        self.env["REDIS_URL"] = self.redis_url
        self.start_http()
        self.start_front()
        for index in range(len(self.socket_ports)):
            self.start_socket(index)
        for index in range(len(self.worker_ports)):
            self.start_worker(index)
        self.wait_ready()
        return self

    def _spawn(self, name, args, extra_env=None, to_file=False):
        # as docker-entrypoint.sh sets it: every log line says which role wrote it
        role = {"http": "http", "front": "http-front"}.get(name, name.rstrip("0123456789"))
        env = dict(self.env, GROUPCAST_ROLE=role, **(extra_env or {}))
        if self.quiet or to_file:
            output = open(self.workdir / f"{name}.log", "ab")
        else:
            output = None
        self.processes[name] = subprocess.Popen(
            [sys.executable, *args], env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_http(self):
        metrics_dir = self.workdir / "prometheus-http"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        self._spawn("http", ["-m", "gunicorn", "-c", str(ROOT / "service/api/gunicorn.conf.py")],
                    {"GUNICORN_BIND": f"127.0.0.1:{self.gunicorn_port}",
                     "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})

    def start_front(self):
        self._spawn("front", ["-m", "service.front"],
                    {"GROUPCAST_FRONT_BIND": f"127.0.0.1:{self.http_port}",
                     "GROUPCAST_FRONT_UPSTREAM": f"127.0.0.1:{self.gunicorn_port}",
                     "GROUPCAST_FRONT_DIR": str(self.workdir / "front")},
                    to_file=True)

    def start_socket(self, index):
        self._spawn(f"socket{index}", ["-m", "service.socket.server", "--bind", "127.0.0.1",
                                       "--port", str(self.socket_ports[index]),
                                       "-v", "0", *self.socket_args, "service.asgi:application"])

    def start_worker(self, index):
        self._spawn(f"worker{index}", ["-m", "django", "runworker", "groupcast.jobs",
                                       "groupcast.events"],
                    {"GROUPCAST_METRICS_PORT": str(self.worker_ports[index])})

    def urls_ready(self):
        urls = [f"{self.http_url}/readyz"]
        urls += [f"http://127.0.0.1:{port}/readyz" for port in self.socket_ports]
        urls += [f"http://127.0.0.1:{port}/readyz" for port in self.worker_ports]
        return urls

    def wait_ready(self, timeout=READY_TIMEOUT):
        for url in self.urls_ready():
            self._wait_url(url, timeout)

    def _wait_url(self, url, timeout):
        def ready():
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise StackError(f"{name} exited with {process.returncode}: {self._output_of(name)}")
            return http_status(url) == 200
        try:
            wait_until(ready, timeout, url)
        except TimeoutError:
            # say why it is not ready (each role's /readyz names the reason), not only that
            raise StackError(f"{url} not ready after {timeout:.0f} s: {http_body(url) or 'no answer'}") from None

    def _output_of(self, name):
        path = self.workdir / f"{name}.log"
        if self.quiet or name == "front":
            tail = self.log(name).strip()
            return f"{path}:\n{tail}" if tail else f"nothing in {path}"
        return "its output is above"

    def signal(self, name, sig):
        self.processes[name].send_signal(sig)

    def wait_exit(self, name, timeout):
        return self.processes[name].wait(timeout)

    def log(self, name):
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self):
        """SIGTERM to every role, then whatever is left of each (its whole process group:
        gunicorn's workers, nginx's) killed after STOP_TIMEOUT; Redis last."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for process in self.processes.values():
            # each role leads its own session: its group holds its children too
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
        if self.redis is not None:
            self.redis.stop()
