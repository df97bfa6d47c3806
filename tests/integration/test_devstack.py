"""`make run` as a developer meets it: a port in use and a dead REDIS_URL are one clear line
at once, and SIGTERM to its process group stops every role and Redis, leaving no process and
no port behind. Real `make run` processes, each bounded in time."""

import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from devstack import ROOT, free_port, port_taken, wait_until

pytestmark = pytest.mark.slow


def runner_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MAKEFLAGS", "MAKELEVEL")}
    env.update({
        "GROUPCAST_RUN_DIR": str(tmp_path / "run"),
        "GROUPCAST_HTTP_PORT": str(free_port()),
        "GROUPCAST_SOCKET_PORT": str(free_port()),
        "GROUPCAST_METRICS_PORT": str(free_port()),
        "GROUPCAST_DRAIN_SECONDS": "1",
    })
    env.update(extra)
    return env


def make_run(env):
    """`make run` in a process group of its own, as a terminal would start it."""
    return subprocess.Popen(["make", "-s", "run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def finish(process, timeout):
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"make run did not exit within {timeout} s:\n{output[-3000:]}")
    return process.returncode, output


def test_a_port_in_use_is_one_clear_line_at_once(tmp_path):
    env = runner_env(tmp_path)
    holder = socket.socket()
    holder.bind(("127.0.0.1", int(env["GROUPCAST_HTTP_PORT"])))
    holder.listen()
    try:
        started = time.monotonic()
        code, output = finish(make_run(env), 60)
    finally:
        holder.close()
    assert code != 0
    assert f"port {env['GROUPCAST_HTTP_PORT']} (http; set GROUPCAST_HTTP_PORT to move it) already in use" in output
    assert "Traceback" not in output
    assert time.monotonic() - started < 30
    # nothing was started, so nothing is left: the other ports are free
    for name in ("GROUPCAST_SOCKET_PORT", "GROUPCAST_METRICS_PORT"):
        assert not port_taken(int(env[name]))


def test_a_dead_redis_url_is_named_at_once(tmp_path):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    code, output = finish(make_run(runner_env(tmp_path, REDIS_URL=dead)), 60)
    assert code != 0
    assert f"REDIS_URL={dead} does not answer" in output and "Connection refused" in output
    assert "Traceback" not in output
    assert time.monotonic() - started < 30  # not the 30 s readiness wait


def processes_marked(marker, run_dir):
    """pids whose environment carries `marker` (every role, gunicorn's workers, Redis) or whose
    command line names the run directory (nginx rewrites its environment)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ or run_dir.encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_sigterm_to_the_process_group_stops_every_role(tmp_path):
    marker = f"GROUPCAST_TEST_MARKER={uuid.uuid4().hex}"
    env = runner_env(tmp_path, GROUPCAST_TEST_MARKER=marker.partition("=")[2])
    process = make_run(env)
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any("Ctrl-C stops everything" in line for line in lines) or process.poll() is not None,
                   90, "make run's banner")
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    assert process.poll() is None, "".join(lines)
    banner = "".join(lines)
    assert "/api/v1/openapi.json" in banner
    redis_port = int(re.search(r"Redis +redis://127\.0\.0\.1:(\d+)/0", banner).group(1))
    run_dir = env["GROUPCAST_RUN_DIR"]
    running = processes_marked(marker, run_dir)
    assert len(running) >= 6, running  # runner, gunicorn (+workers), front (+nginx), socket, worker, Redis

    os.killpg(process.pid, signal.SIGTERM)
    process.wait(40)
    reader.join(5)

    wait_until(lambda: not processes_marked(marker, run_dir), 10, "every process of the stack to exit")
    ports = [int(env[name]) for name in ("GROUPCAST_HTTP_PORT", "GROUPCAST_SOCKET_PORT", "GROUPCAST_METRICS_PORT")]
    for port in ports + [redis_port]:
        assert not port_taken(port), f"port {port} still bound after the stack stopped"
    assert "Traceback" not in "".join(lines)
    assert not (Path(run_dir) / "stack.env").exists()
