"""The Python ceiling: a bare `websockets` server fanning Redis pub/sub out to groups.

    python -m bench.ceiling --port 8002 --redis redis://127.0.0.1:6379/0

No features: no auth, no history, no limits. A client sends {"type": "subscribe",
"group": g} and gets {"type": "subscribed", "group": g}; every message PUBLISHed to
`ceiling:<g>` (already the client frame) is broadcast once, encoded once, to the group.
A client may publish too: {"type": "publish", "group": g, "data": ...} is PUBLISHed as
that frame and answered {"type": "published", "group": g}.
"""

import argparse
import asyncio
import json
import signal

import redis.asyncio
from websockets.asyncio.server import broadcast, serve

PREFIX = "ceiling:"


class Groups:
    """Group name → the open connections subscribed to it, in this process."""

    def __init__(self, client):
        self.members = {}
        self.client = client

    async def serve_client(self, connection):
        """Called for each WebSocket: one subscribe frame, then publishes."""
        frame = json.loads(await connection.recv())
        group = frame["group"]
        members = self.members.setdefault(group, set())
        members.add(connection)
        try:
            await connection.send(f'{{"type":"subscribed","group":{json.dumps(group)}}}')
            async for text in connection:
                await self.publish(connection, json.loads(text))
        finally:
            members.discard(connection)
            if not members:
                self.members.pop(group, None)

    async def publish(self, connection, frame):
        if frame.get("type") != "publish":
            return
        group = frame["group"]
        message = json.dumps({"type": "message", "group": group, "data": frame["data"]},
                             separators=(",", ":"))
        await self.client.publish(PREFIX + group, message)
        await connection.send(f'{{"type":"published","group":{json.dumps(group)}}}')

    async def relay(self, client):
        """Broadcast every published frame to the group's members."""
        pubsub = client.pubsub()
        await pubsub.psubscribe(PREFIX + "*")
        async for message in pubsub.listen():
            if message["type"] != "pmessage":
                continue
            members = self.members.get(message["channel"][len(PREFIX):].decode())
            if members:
                broadcast(members, message["data"].decode())


async def main(port, redis_url):
    client = redis.asyncio.Redis.from_url(redis_url)
    groups = Groups(client)
    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.cancel)
    relay = asyncio.ensure_future(groups.relay(client))
    async with serve(groups.serve_client, "127.0.0.1", port, compression=None):
        try:
            await stop
        except asyncio.CancelledError:
            pass
    relay.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    options = parser.parse_args()
    asyncio.run(main(options.port, options.redis))
