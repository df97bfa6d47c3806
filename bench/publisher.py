"""The HTTP publish endpoint of the peers that have none of their own.

    python -m bench.publisher --kind socketio --port 8003 --redis redis://...

POST /publish {"group": g, "data": {...}} → 200. `socketio` emits through a write-only
AsyncRedisManager (python-socketio's documented way to emit from another process);
`ceiling` PUBLISHes the client frame to `ceiling:<g>`. Its CPU counts as server CPU,
like gunicorn's for groupcast and stock Channels.
"""

import argparse
import json

import redis.asyncio
import socketio
from aiohttp import web


def socketio_emitter(redis_url):
    manager = socketio.AsyncRedisManager(redis_url, write_only=True)

    async def emit(group, data):
        await manager.emit("message", data, room=group, namespace="/")

    return emit


def ceiling_emitter(redis_url):
    client = redis.asyncio.Redis.from_url(redis_url)

    async def emit(group, data):
        frame = json.dumps({"type": "message", "group": group, "data": data}, separators=(",", ":"))
        await client.publish("ceiling:" + group, frame)

    return emit


EMITTERS = {"socketio": socketio_emitter, "ceiling": ceiling_emitter}


def application(kind, redis_url):
    emit = EMITTERS[kind](redis_url)

    async def publish(request):
        body = await request.json()
        await emit(body["group"], body["data"])
        return web.json_response({"group": body["group"]})

    app = web.Application()
    app.router.add_post("/publish", publish)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", choices=sorted(EMITTERS), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    options = parser.parse_args()
    web.run_app(
        application(options.kind, options.redis), host="127.0.0.1", port=options.port,
        access_log=None, print=None,
    )
