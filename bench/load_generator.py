"""The Go load generator (bench/loadgen): built once per source version into .cache,
then driven one JSON line at a time over its stdin/stdout."""

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path(__file__).resolve().parent / "loadgen"
CACHE = ROOT / ".cache" / "bench"


def loadgen_binary():
    """The load generator for the current sources, building it when they changed."""
    digest = hashlib.sha256()
    for path in sorted(SOURCE.glob("*.go")) + [SOURCE / "go.mod", SOURCE / "go.sum"]:
        digest.update(path.name.encode() + path.read_bytes())
    binary = CACHE / f"loadgen-{digest.hexdigest()[:12]}"
    if binary.exists():
        return binary
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("go is not installed: it is needed to build bench/loadgen")
    CACHE.mkdir(parents=True, exist_ok=True)
    print("building bench/loadgen", flush=True)
    subprocess.run(["nice", "-n", "10", go, "build", "-trimpath", "-o", str(binary), "."],
                   cwd=SOURCE, env={**os.environ, "GOFLAGS": "-buildvcs=false"},
                   check=True, timeout=900)
    return binary


class LoadGeneratorError(RuntimeError):
    pass


class LoadGenerator:
    """One load generator process for one system and scenario."""

    def __init__(self, log_path):
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [str(loadgen_binary())], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, start_new_session=True,
        )

    @property
    def pid(self):
        return self.process.pid

    def call(self, command, timeout):
        """Send one command; return its reply, or raise if none comes within `timeout`."""
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LoadGeneratorError(f"no reply to {command['cmd']} within {timeout}s")
            ready, _, _ = select.select([self.process.stdout], [], [], min(left, 1.0))
            if ready:
                break
            if self.process.poll() is not None:
                raise LoadGeneratorError(f"load generator exited with {self.process.returncode}")
        line = self.process.stdout.readline()
        if not line:
            raise LoadGeneratorError("load generator closed its output")
        reply = json.loads(line)
        if "error" in reply:
            raise LoadGeneratorError(reply["error"])
        return reply

    def stop(self):
        if self.process.poll() is None:
            try:
                self.call({"cmd": "quit"}, timeout=15)
                self.process.wait(5)
            except (LoadGeneratorError, OSError, subprocess.TimeoutExpired, ValueError):
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()
