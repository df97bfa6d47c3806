"""/healthz, /readyz and /metrics of a socket process: a small ASGI app beside /ws, so
probes and scrapes never touch the consumers."""

import json

from service import metrics
from service.socket.hub import current_hub

# Every JSON body ends with a newline (so `curl` output does not run into the prompt).
NOT_FOUND = b'{"error":{"code":"not_found","message":"not found"}}\n'


async def probes_app(scope, receive, send):
    path = scope["path"]
    if path == "/healthz":
        status, body, kind = 200, b'{"status":"ok"}\n', b"application/json"
    elif path == "/readyz":
        hub = current_hub()
        if hub.draining:
            status, body = 503, {"status": "unready", "reason": "draining"}
        elif not hub.linked:
            # the links it holds are what it depends on: on a cluster, the shards of its groups
            down = ", ".join(hub.fanout.subscriptions.down()) or "redis"
            status, body = 503, {"status": "unready", "reason": f"redis unreachable ({down})"}
        else:
            status, body = 200, {"status": "ready"}
        body, kind = json.dumps(body).encode() + b"\n", b"application/json"
    elif path == "/metrics":
        current_hub()  # so the socket gauges exist before any client
        text, content_type = metrics.exposition()
        status, body, kind = 200, text, content_type.encode()
    else:
        status, body, kind = 404, NOT_FOUND, b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", kind), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def websocket_not_found(scope, receive, send):
    """A WebSocket upgrade to any path but /ws: refused with 404, nothing logged."""
    await receive()  # websocket.connect
    await send({"type": "websocket.http.response.start", "status": 404,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "websocket.http.response.body", "body": NOT_FOUND})
