"""Server CPU per HTTP publish, process by process (docs/performance.md, "The cost of one
HTTP publish").

    .venv/bin/python hack/publish_cost.py                       # this checkout, 5 runs
    .venv/bin/python hack/publish_cost.py --runs 7 \\
        --variant before=../groupcast-main --variant after=.  # interleaved: b a b a ...
    .venv/bin/python hack/publish_cost.py --variant one=.,GUNICORN_WORKERS=1 \\
        --variant unix=.,unix=1 --variant other=.,python=../other-venv/bin/python
    .venv/bin/python hack/publish_cost.py --variant single=. --variant batch=.,batch=10

Each run starts a fresh devstack.Stack (nginx front + gunicorn, one socket process, one
runworker) of the variant's checkout on a private Redis (AOF, appendfsync everysec, as
bench/ runs it), warms it up, then sends --requests publishes (100 groups round robin,
a bench-sized body, no subscribers) from --clients keep-alive connections, each waiting
for its answer before sending the next. User + system CPU of every process is read from
/proc/<pid>/stat before and after, children included (nginx's worker, gunicorn's
workers). It prints µs of CPU per publish for each role, the median and the spread
(min-max) over the runs; a variant's batch=N sends the same messages N to a request
(POST /api/v1/batch), still counted per message. The publish path is front + gunicorn + Redis; the idle socket
and worker processes are shown apart. Not a test: the machine's other load moves the
absolutes, so compare variants run interleaved in one invocation.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
TICK = os.sysconf("SC_CLK_TCK")
PATH_ROLES = ("front", "gunicorn", "redis")
OTHER_ROLES = ("socket", "worker")
GROUPS = 100
WARMUP = 1000


def cpu_seconds(pid):
    """(user, system) CPU seconds of one process (all its threads, living or ended)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0, 0.0
    return int(fields[11]) / TICK, int(fields[12]) / TICK


def family(pid):
    """`pid` and every descendant alive now."""
    children = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def role_pids(stack, redis_pid):
    roles = {"front": stack.processes["front"].pid, "gunicorn": stack.processes["http"].pid,
             "socket": stack.processes["socket0"].pid, "worker": stack.processes["worker0"].pid}
    pids = {role: family(pid) for role, pid in roles.items()}
    pids["redis"] = [redis_pid]
    return pids


def snapshot(pids):
    return {role: {pid: cpu_seconds(pid) for pid in members} for role, members in pids.items()}


def request_bytes(port, key, groups, sequence, batch):
    """A publish to groups[0], or with `batch` a batch of one message to each group."""
    messages = [{"group": group, "data": {"bp": 0, "bs": sequence, "bt": time.time_ns(), "x": "x" * 64}}
                for group in groups]
    body = json.dumps({"messages": messages} if batch else messages[0]).encode()
    head = (f"POST /api/v1/{'batch' if batch else 'publish'} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


def read_answer(conn, buffer):
    """(status, rest of the buffer, closing) of one answer, sized by Content-Length or
    chunked; closing when the server ends the connection after it (nginx does so every
    keepalive_requests answers)."""

    def fill(buffer, needed):
        while needed not in buffer if isinstance(needed, bytes) else len(buffer) < needed:
            chunk = conn.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            buffer += chunk
        return buffer

    head, _, rest = fill(buffer, b"\r\n\r\n").partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    status = int(lines[0].split()[1])
    closing = b"connection: close" in lines
    lengths = [int(line.split(b":", 1)[1]) for line in lines if line.startswith(b"content-length:")]
    if lengths:
        rest = fill(rest, lengths[0])
        return status, rest[lengths[0]:], closing
    while True:  # chunked: size line, data, CRLF ... until the 0-size chunk and its CRLF
        size_line, _, rest = fill(rest, b"\r\n").partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        rest = fill(rest, size + 2)[size + 2:]
        if size == 0:
            return status, rest, closing


def drive(port, key, count, clients, prefix, batch=0):
    """`count` publishes over `clients` keep-alive connections (`batch` to a request); the
    number of requests not answered 200."""
    failures, errors = [], []
    size = batch or 1
    requests = count // size
    share = [requests // clients + (i < requests % clients) for i in range(clients)]

    def client(index):
        bad = 0
        conn = None
        try:
            for n in range(share[index]):
                if conn is None:
                    conn = socket.create_connection(("127.0.0.1", port))
                    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    buffer = b""
                first = (index + n * clients) * size
                groups = [f"{prefix}{(first + m) % GROUPS}" for m in range(size)]
                conn.sendall(request_bytes(port, key, groups, n, batch))
                status, buffer, closing = read_answer(conn, buffer)
                bad += status != 200
                if closing:
                    conn.close()
                    conn = None
            if conn is not None:
                conn.close()
        except OSError as error:
            errors.append(error)
        failures.append(bad)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sum(failures)


def one_run(requests, clients, env):
    """Start a stack from this checkout (sys.path[0]), measure, stop; a dict of results."""
    from devstack import Redis, Stack

    workdir = Path(tempfile.mkdtemp(prefix="groupcast-cost-"))
    redis = Redis(workdir / "redis", fsync="everysec")
    redis.start()
    batch = int(env.pop("batch", 0))
    stack = Stack(redis_url=redis.url, workdir=workdir, env=env)
    if env.pop("unix", None) == "1":
        workdir.chmod(0o755)  # nginx's worker process may run as another user
        _bind_unix(stack, workdir / "gunicorn.sock")
    try:
        stack.start()
        failed = drive(stack.http_port, stack.api_key, WARMUP, clients, "warm", batch)
        pids = role_pids(stack, redis.process.pid)
        before, started = snapshot(pids), time.monotonic()
        failed += drive(stack.http_port, stack.api_key, requests, clients, "g", batch)
        elapsed, after = time.monotonic() - started, snapshot(pids)
    finally:
        stack.stop()
        redis.stop()
    def spent(role, kind):
        return sum(after[role][pid][kind] - before[role].get(pid, (0.0, 0.0))[kind]
                   for pid in after[role])

    return {"us": {role: 1e6 * (spent(role, 0) + spent(role, 1)) / requests for role in pids},
            "system_us": {role: 1e6 * spent(role, 1) / requests for role in pids},
            "per_second": requests / elapsed, "failed": failed}


def _bind_unix(stack, path):
    """gunicorn on a unix socket, the front proxying to it (a variant's unix=1)."""
    spawn = stack._spawn

    def on_unix_socket(name, args, extra_env=None, to_file=False):
        extra_env = dict(extra_env or {})
        if "GUNICORN_BIND" in extra_env:
            extra_env["GUNICORN_BIND"] = f"unix:{path}"
        if "GROUPCAST_FRONT_UPSTREAM" in extra_env:
            extra_env["GROUPCAST_FRONT_UPSTREAM"] = f"unix:{path}"
        spawn(name, args, extra_env, to_file)

    stack._spawn = on_unix_socket


def variant(text):
    """label=path[,NAME=VALUE...]: environment variables for the stack, and two of the
    harness's own: python=<interpreter> (a virtualenv of other packages), unix=1, batch=N."""
    label, _, rest = text.partition("=")
    path, *assignments = rest.split(",")
    return label, str(Path(path).resolve()), dict(a.split("=", 1) for a in assignments)


def summary(label, results):
    def cell(values):
        return f"{statistics.median(values):7.1f} ({min(values):.0f}-{max(values):.0f})"

    path = [sum(r["us"][role] for role in PATH_ROLES) for r in results]
    row = [label, cell(path)] + [cell([r["us"][role] for r in results]) for role in PATH_ROLES + OTHER_ROLES]
    row.append(f"{statistics.median(r['per_second'] for r in results):6.0f}")
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--variant", action="append", type=variant,
                        help="label=path[,NAME=VALUE...]: a checkout and extra environment")
    parser.add_argument("--once", help=argparse.SUPPRESS)  # a child: one run, a JSON line
    args = parser.parse_args()
    if args.once:
        sys.path.insert(0, args.once)
        os.chdir(args.once)
        env = json.loads(os.environ.pop("PUBLISH_COST_ENV", "{}"))
        print(json.dumps(one_run(args.requests, args.clients, env)))
        return
    variants = args.variant or [("this", str(HERE), {})]
    results = {label: [] for label, _, _ in variants}
    for run in range(args.runs):
        for label, path, env in variants:  # interleaved, so drifting load hits all alike
            python = env.get("python", sys.executable)
            env = {name: value for name, value in env.items() if name != "python"}
            child = subprocess.run(
                [python, __file__, "--once", path, "--requests", str(args.requests),
                 "--clients", str(args.clients)],
                env=dict(os.environ, PUBLISH_COST_ENV=json.dumps(env)),
                capture_output=True, text=True,
            )
            if child.returncode:
                sys.exit(f"run {run + 1} of {label} failed:\n{child.stdout}{child.stderr}")
            result = json.loads(child.stdout.strip().splitlines()[-1])
            results[label].append(result)
            us = " ".join(f"{role} {value:.0f} ({result['system_us'][role]:.0f} sys)"
                          for role, value in result["us"].items())
            print(f"run {run + 1} {label}: {us} µs/publish, {result['per_second']:.0f}/s, "
                  f"{result['failed']} not 200", flush=True)
    header = ["variant", "publish path"] + list(PATH_ROLES + OTHER_ROLES) + ["publishes/s"]
    print("\nµs of CPU per publish, median (min-max) of", args.runs, "runs")
    print(" | ".join(header))
    for label, _, _ in variants:
        print(" | ".join(summary(label, results[label])))


if __name__ == "__main__":
    main()
