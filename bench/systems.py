"""The systems under test, each started fresh on free loopback ports against the run's Redis.

A system knows how to start and stop its processes, which of them count as server CPU
(`roles`), where its clients connect and how the load generator publishes to it.
Every one runs one WebSocket process; publishing goes over HTTP to the system's own
endpoint (or, for the peers that have none, to bench/publisher.py).
"""

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jwt

from devstack import Stack, free_port, http_status, wait_until

ROOT = Path(__file__).resolve().parent.parent
CENTRIFUGO_VERSION = "v6.9.1"
CENTRIFUGO_DIR = ROOT / ".cache" / "tools" / f"centrifugo-{CENTRIFUGO_VERSION}"
READY_TIMEOUT = 60
# With more groups than this, groupcast's clients share one token (a `bench-*` pattern)
# rather than one minted per group through the API.
TOKEN_PER_GROUP_UP_TO = 100
# Stock Channels' publishing view on gunicorn's threaded workers, as a Django WSGI app is
# commonly served (groupcast's http role had this shape before its uvicorn workers).
GUNICORN_WORKERS = "2"
GUNICORN_THREADS = "4"


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_post_json(url, body, headers):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", **headers},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


class Processes:
    """Child processes of one system, each in its own session, with a log file each."""

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.popen = {}

    def spawn(self, name, args, env=None):
        log = open(self.workdir / f"{name}.log", "ab")
        self.popen[name] = subprocess.Popen(
            args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        return self.popen[name]

    def check_alive(self):
        for name, process in self.popen.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{self.log(name)}")

    def wait(self, predicate, what):
        def ready():
            self.check_alive()
            return predicate()
        wait_until(ready, READY_TIMEOUT, what)

    def log(self, name):
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self):
        for process in self.popen.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for process in self.popen.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


class System:
    """One system under test; subclasses say how to run it."""

    name = ""
    protocol = ""
    group_key = "group"

    def __init__(self, *, redis_url, workdir, socket_processes=1):
        self.redis_url = redis_url
        self.workdir = Path(workdir)
        # only groupcast runs more than one (the peers' scenarios keep it at 1)
        self.socket_processes = socket_processes
        self.processes = Processes(self.workdir)

    def start(self):
        raise NotImplementedError

    def stop(self):
        self.processes.stop()

    def roles(self):
        """Role name → pid of every server process (their children count too)."""
        return {name: process.pid for name, process in self.processes.popen.items()}

    def tokens(self, groups):
        """Group → the token its clients connect with (none by default)."""
        return {group: "" for group in groups}

    def describe(self):
        return {"ws_url": self.ws_url, "publish_url": self.publish_url}


class Groupcast(System):
    """groupcast itself, through devstack.Stack: gunicorn, one Daphne socket
    process (or `socket_processes`) and one runworker, with the run's Redis."""

    name = "groupcast"
    protocol = "groupcast"

    def start(self):
        # A short drain only shortens the stop after each scenario (no clients are left).
        env = {"GROUPCAST_DRAIN_SECONDS": "1"}
        if self.socket_processes > 1:
            # the load generator's clients do not reconnect: no process may close its
            # excess while the others are still filling up
            env["GROUPCAST_REBALANCE"] = "false"
        self.stack = Stack(socket_ports=[free_port() for _ in range(self.socket_processes)],
                           redis_url=self.redis_url, workdir=self.workdir / "stack", env=env)
        try:
            self.stack.start()
        except BaseException:
            self.stack.stop()
            raise
        self.ws_url = self.stack.ws_url(0)
        self.ws_urls = [self.stack.ws_url(index) for index in range(self.socket_processes)]
        # Server-Sent Events on the same socket process (GET /sse?token=..&group=..)
        self.sse_url = self.ws_url.replace("ws://", "http://", 1).rsplit("/", 1)[0] + "/sse"
        self.publish_url = f"{self.stack.http_url}/api/v1/publish"
        self.publish_headers = {"Authorization": f"Bearer {self.stack.api_key}"}

    def stop(self):
        self.stack.stop()

    def roles(self):
        return {name: process.pid for name, process in self.stack.processes.items()}

    def tokens(self, groups):
        headers = {"Authorization": f"Bearer {self.stack.api_key}"}
        url = f"{self.stack.http_url}/api/v1/tokens"

        def token(sub, patterns):
            # `publish`: the clients of the WebSocket publish phases publish to their group
            return http_post_json(url, {"sub": sub, "groups": patterns, "publish": patterns,
                                        "ttl": 3600}, headers)["token"]

        if len(groups) > TOKEN_PER_GROUP_UP_TO:
            # every group is bench-<n>: one token by prefix pattern serves them all
            return dict.fromkeys(groups, token("bench", ["bench-*"]))
        return {group: token(f"bench-{group}", [group]) for group in groups}

    def log_tail(self):
        return {name: self.stack.log(name)[-1500:] for name in self.stack.processes}


class StockChannels(System):
    """Stock Channels (bench/stock): Daphne + RedisChannelLayer, group_send from a
    gunicorn view with async_to_sync."""

    name = "stock channels"
    protocol = "stock"

    def start(self):
        socket_port, http_port = free_port(), free_port()
        env = {"REDIS_URL": self.redis_url, "BENCH_SECRET_KEY": secrets.token_urlsafe(48),
               "DJANGO_SETTINGS_MODULE": "bench.stock.settings"}
        self.processes.spawn("http", [
            sys.executable, "-m", "gunicorn", "--workers", GUNICORN_WORKERS, "--threads",
            GUNICORN_THREADS, "--worker-class", "gthread", "--keep-alive", "5",
            "--bind", f"127.0.0.1:{http_port}", "bench.stock.wsgi",
        ], env)
        self.processes.spawn("socket", [
            sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(socket_port), "-v", "0",
            "bench.stock.asgi:application",
        ], env)
        self.processes.wait(lambda: port_open(socket_port), "daphne")
        self.processes.wait(lambda: http_status(f"http://127.0.0.1:{http_port}/") is not None,
                            "gunicorn")
        self.ws_url = f"ws://127.0.0.1:{socket_port}/ws"
        self.publish_url = f"http://127.0.0.1:{http_port}/publish"
        self.publish_headers = {}


class Socketio(System):
    """python-socketio: AsyncServer + AsyncRedisManager under uvicorn, publishing through
    a write-only AsyncRedisManager (bench/publisher.py)."""

    name = "python-socketio"
    protocol = "socketio"

    def start(self):
        socket_port, http_port = free_port(), free_port()
        env = {"REDIS_URL": self.redis_url}
        self.processes.spawn("socket", [
            sys.executable, "-m", "uvicorn", "bench.socketio_app:app", "--host", "127.0.0.1",
            "--port", str(socket_port), "--log-level", "warning", "--no-access-log",
        ], env)
        self.processes.spawn("publisher", [
            sys.executable, "-m", "bench.publisher", "--kind", "socketio",
            "--port", str(http_port), "--redis", self.redis_url,
        ])
        self.processes.wait(lambda: port_open(socket_port), "uvicorn")
        self.processes.wait(lambda: port_open(http_port), "publisher")
        self.ws_url = f"ws://127.0.0.1:{socket_port}/socket.io/"
        self.publish_url = f"http://127.0.0.1:{http_port}/publish"
        self.publish_headers = {}


class Ceiling(System):
    """The Python ceiling: bench/ceiling.py (websockets + Redis pub/sub, no features)."""

    name = "websockets ceiling"
    protocol = "ceiling"

    def start(self):
        socket_port, http_port = free_port(), free_port()
        self.processes.spawn("socket", [
            sys.executable, "-m", "bench.ceiling", "--port", str(socket_port),
            "--redis", self.redis_url,
        ])
        self.processes.spawn("publisher", [
            sys.executable, "-m", "bench.publisher", "--kind", "ceiling",
            "--port", str(http_port), "--redis", self.redis_url,
        ])
        self.processes.wait(lambda: port_open(socket_port), "ceiling server")
        self.processes.wait(lambda: port_open(http_port), "publisher")
        self.ws_url = f"ws://127.0.0.1:{socket_port}/"
        self.publish_url = f"http://127.0.0.1:{http_port}/publish"
        self.publish_headers = {}


def centrifugo_binary():
    """Centrifugo built from source with `go install`, once, into .cache/tools."""
    binary = CENTRIFUGO_DIR / "centrifugo"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("go is not installed: it is needed to build Centrifugo")
    CENTRIFUGO_DIR.mkdir(parents=True, exist_ok=True)
    print(f"building Centrifugo {CENTRIFUGO_VERSION} (once, into {CENTRIFUGO_DIR.relative_to(ROOT)})",
          flush=True)
    subprocess.run(
        ["nice", "-n", "10", go, "install", f"github.com/centrifugal/centrifugo/v6@{CENTRIFUGO_VERSION}"],
        env={**os.environ, "GOBIN": str(CENTRIFUGO_DIR), "GOFLAGS": "-buildvcs=false"},
        check=True, timeout=1800,
    )
    return binary


class Centrifugo(System):
    """Centrifugo v6 with its Redis engine, HTTP API publish and JWT connection tokens.

    Configured as its docs describe for this use: HMAC connection tokens, clients allowed
    to subscribe to channels without a namespace and to publish into the ones they are
    subscribed to (client-side publish, for the WebSocket publish phase), everything else
    at its defaults (so no history or recovery: it does less Redis work per publish than
    groupcast)."""

    name = "centrifugo"
    protocol = "centrifugo"
    group_key = "channel"

    def start(self):
        binary = centrifugo_binary()
        port = free_port()
        self.token_secret = secrets.token_urlsafe(48)
        api_key = secrets.token_urlsafe(24)
        config = {
            "http_server": {"address": "127.0.0.1", "port": port},
            "log": {"level": "error"},
            "engine": {"type": "redis", "redis": {"address": [self.redis_url]}},
            "client": {"token": {"hmac_secret_key": self.token_secret},
                       "allowed_origins": ["http://127.0.0.1"]},
            "channel": {"without_namespace": {"allow_subscribe_for_client": True,
                                              "allow_publish_for_subscriber": True}},
            "http_api": {"key": api_key},
            "health": {"enabled": True},
            "usage_stats": {"disabled": True},
        }
        path = self.workdir / "centrifugo.json"
        path.write_text(json.dumps(config, indent=2))
        self.processes.spawn("centrifugo", [str(binary), "--config", str(path)])
        self.processes.wait(lambda: http_status(f"http://127.0.0.1:{port}/health") == 200,
                            "centrifugo")
        self.ws_url = f"ws://127.0.0.1:{port}/connection/websocket"
        self.publish_url = f"http://127.0.0.1:{port}/api/publish"
        self.publish_headers = {"X-API-Key": api_key}

    def tokens(self, groups):
        exp = int(time.time()) + 3600
        return {group: jwt.encode({"sub": f"bench-{group}", "exp": exp}, self.token_secret,
                                  algorithm="HS256")
                for group in groups}


SYSTEMS = {cls.name: cls for cls in (Groupcast, Centrifugo, Socketio, StockChannels, Ceiling)}
