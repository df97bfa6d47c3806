"""The python-socketio peer: AsyncServer with AsyncRedisManager, served by uvicorn.

    uvicorn bench.socketio_app:app

A client sends its group as the Socket.IO auth payload (`40{"group": ...}`) and enters
that room on connect; messages come from a write-only AsyncRedisManager (bench/publisher.py),
or from a client's own `publish` event, which the handler emits to the room (through Redis,
like the publisher) and acknowledges.
"""

import os

import socketio

sio = socketio.AsyncServer(
    async_mode="asgi",
    client_manager=socketio.AsyncRedisManager(os.environ["REDIS_URL"]),
    transports=["websocket"],
)


@sio.event
async def connect(sid, environ, auth):
    """Called when a client connects: it joins the room named in its auth payload."""
    group = (auth or {}).get("group")
    if not group:
        raise socketio.exceptions.ConnectionRefusedError("auth needs a group")
    await sio.enter_room(sid, group)


@sio.event
async def publish(sid, message):
    """A client's `publish` event {"group", "data"}: emitted to the room, then acknowledged."""
    await sio.emit("message", message["data"], room=message["group"])


app = socketio.ASGIApp(sio)
