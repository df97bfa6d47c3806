"""`make run`: the local stack on 127.0.0.1 until Ctrl-C or SIGTERM."""

import os
import signal
import sys
import time

from devstack import ROOT, Stack


def main():
    http_port = int(os.environ.get("GROUPCAST_HTTP_PORT", "8000"))
    socket_port = int(os.environ.get("GROUPCAST_SOCKET_PORT", "8001"))
    worker_port = int(os.environ.get("GROUPCAST_METRICS_PORT", "9102"))
    stack = Stack(http_port=http_port, socket_ports=[socket_port], worker_ports=[worker_port],
                  redis_url=os.environ.get("REDIS_URL"), workdir=ROOT / ".run", quiet=False)
    stopping = []

    def stop(signum, frame):
        stopping.append(signum)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        stack.start()
        print(
            f"""
groupcast is running:
  demo page        {stack.http_url}/
  HTTP API         {stack.http_url}/api/v1/   (metrics: {stack.http_url}/metrics)
                   through the front (nginx; log: {stack.workdir / "front.log"}) to gunicorn
  WebSocket        {stack.ws_url(0)}   (metrics: http://127.0.0.1:{socket_port}/metrics)
  worker metrics   http://127.0.0.1:{worker_port}/metrics
  Redis            {stack.redis_url}
  dev API key      {stack.api_key}

Publish a message:
  curl -s -X POST {stack.http_url}/api/v1/publish \\
       -H 'Authorization: Bearer {stack.api_key}' -H 'Content-Type: application/json' \\
       -d '{{"group": "news", "data": {{"text": "hello"}}}}'

Ctrl-C stops everything.
""",
            flush=True,
        )
        while all(p.poll() is None for p in stack.processes.values()):
            time.sleep(0.5)
        print("a process exited; stopping", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


main()
