"""The official Channels tutorial's chat app (tests/tutorial), unchanged, on real Daphne
processes: on groupcast's layer configured exactly as the docs configure channels_redis,
on channels_redis itself (the baseline), and on a fleet half-way through a migration."""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import websockets

from devstack import ROOT, free_port, http_status, stop_process, wait_until

pytestmark = pytest.mark.slow

STOCK = "channels_redis.core.RedisChannelLayer"
GROUPCAST = "service.layer.GroupcastChannelLayer"


class Daphne:
    """Plain `daphne mysite.asgi:application`, as the tutorial deploys it."""

    def __init__(self, backend, config, workdir):
        self.port = free_port()
        self.log = Path(workdir) / f"daphne-{self.port}.log"
        env = dict(os.environ)
        env.update({
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests' / 'tutorial'}",
            "DJANGO_SETTINGS_MODULE": "mysite.settings",
            "TUTORIAL_LAYER": backend,
            "TUTORIAL_LAYER_CONFIG": json.dumps(config),
            "TUTORIAL_DB": str(Path(workdir) / "db.sqlite3"),
        })
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.port), "mysite.asgi:application"],
            env=env, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
        )
        try:
            wait_until(self._up, 30, f"daphne on {self.port}")
        except Exception:
            self.stop()
            raise

    def _up(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"daphne exited:\n{self.log.read_text()[-3000:]}")
        return http_status(f"http://127.0.0.1:{self.port}/") is not None

    def url(self, route, room):
        return f"ws://127.0.0.1:{self.port}/ws/{route}/{room}/"

    def stop(self):
        stop_process(self.process)


def hosts_config(prefix, **extra):
    """The tutorial's CONFIG, pointed at the test Redis: {"hosts": [("127.0.0.1", port)]}."""
    redis = urlsplit(os.environ["REDIS_URL"])
    return {"hosts": [[redis.hostname, redis.port]], "prefix": prefix, **extra}


@pytest.fixture
def fleet():
    started = []
    workdir = tempfile.mkdtemp(prefix="groupcast-tutorial-")

    def start(*layers):
        prefix = f"tut{uuid.uuid4().hex[:8]}"
        for backend, extra in layers:
            started.append(Daphne(backend, hosts_config(prefix, **extra), workdir))
        return started

    yield start
    for daphne in started:
        daphne.stop()


async def chat(servers, room="lobby"):
    """Every client (both consumer kinds on every server) sends one message; return what
    each received, after waiting for the last expected message (and a little longer, so a
    duplicate would show)."""
    urls = [server.url(route, room) for server in servers for route in ("chat", "achat")]
    clients = [await websockets.connect(url, origin="http://127.0.0.1", open_timeout=10) for url in urls]
    try:
        for n, client in enumerate(clients):
            await client.send(json.dumps({"message": f"m{n}"}))
        received = []
        for client in clients:
            got = [json.loads(await asyncio.wait_for(client.recv(), 10))["message"] for _ in clients]
            with pytest.raises(TimeoutError):
                got.append(await asyncio.wait_for(client.recv(), 0.5))
            received.append(sorted(got))
        return received, sorted(f"m{n}" for n in range(len(clients)))
    finally:
        for client in clients:
            await client.close()


@pytest.mark.parametrize(
    "layers",
    [
        pytest.param([(GROUPCAST, {}), (GROUPCAST, {})], id="groupcast"),
        pytest.param([(STOCK, {}), (STOCK, {})], id="channels_redis"),
        pytest.param([(STOCK, {}), (GROUPCAST, {"mixed_fleet": True})], id="migrating"),
        pytest.param([(GROUPCAST, {"mixed_fleet": True}), (GROUPCAST, {})], id="finishing-migration"),
    ],
)
async def test_every_chat_message_reaches_every_client_once(fleet, layers):
    servers = fleet(*layers)
    received, sent = await chat(servers)
    assert received == [sent] * len(received)
