"""`make run`: the local stack on 127.0.0.1 until Ctrl-C or SIGTERM.

A port in use or a REDIS_URL that does not answer stops it at once with a message saying
which and what to do; a signal to it (or to `make run`'s whole process group) stops every
role and Redis, leaving no process and no port behind.
"""

import os
import signal
import sys
import time
from pathlib import Path

from devstack import ROOT, Stack, StackError


def main():
    http_port = int(os.environ.get("GROUPCAST_HTTP_PORT", "8000"))
    socket_port = int(os.environ.get("GROUPCAST_SOCKET_PORT", "8001"))
    worker_port = int(os.environ.get("GROUPCAST_METRICS_PORT", "9102"))
    # .run/ by default; the tests run a stack of their own elsewhere
    workdir = Path(os.environ.get("GROUPCAST_RUN_DIR") or ROOT / ".run")
    stack = Stack(http_port=http_port, socket_ports=[socket_port], worker_ports=[worker_port],
                  redis_url=os.environ.get("REDIS_URL"), workdir=workdir, quiet=False,
                  redis_cluster=os.environ.get("GROUPCAST_RUN_CLUSTER") in ("1", "true", "yes"))
    stack_env = workdir / "stack.env"

    def stop(signum, frame):
        # Once: a second signal (Ctrl-C again, or the group's SIGTERM after a Ctrl-C) must not
        # interrupt the stopping itself, which would leave processes behind.
        for each in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(each, signal.SIG_IGN)
        raise KeyboardInterrupt

    for each in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(each, stop)
    status = 0
    try:
        stack.start()
        # what `make manage` needs to reach this stack (devstack/manage.py)
        stack_env.write_text(f"REDIS_URL={stack.redis_url}\n")
        print(
            f"""
groupcast is running:
  demo page        {stack.http_url}/
  HTTP API         {stack.http_url}/api/v1/openapi.json   (the OpenAPI description; metrics: {stack.http_url}/metrics)
                   through the front (nginx; log: {stack.workdir / "front.log"}) to gunicorn
  WebSocket        {stack.ws_url(0)}   (metrics: http://127.0.0.1:{socket_port}/metrics)
  worker metrics   http://127.0.0.1:{worker_port}/metrics
  Redis            {stack.redis_url}
  dev API key      {stack.api_key}

Publish a message:
  curl -s -X POST {stack.http_url}/api/v1/publish \\
       -H 'Authorization: Bearer {stack.api_key}' -H 'Content-Type: application/json' \\
       -d '{{"group": "news", "data": {{"text": "hello"}}}}'
Mint a client token:
  make manage ARGS="groupcast_token user-1 news"

Ctrl-C stops everything.
""",
            flush=True,
        )
        while all(p.poll() is None for p in stack.processes.values()):
            time.sleep(0.5)
        exited = [name for name, p in stack.processes.items() if p.poll() is not None]
        print(f"make run: {', '.join(exited)} exited; stopping", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        pass
    except StackError as error:
        print(f"make run: {error}", file=sys.stderr)
        status = 1
    finally:
        stack.stop()
        stack_env.unlink(missing_ok=True)
    return status


sys.exit(main())
