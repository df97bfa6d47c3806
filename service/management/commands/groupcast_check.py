"""Check configuration and Redis; with --roundtrip, a full publish/receive through a deployment.

    python -m service.manage groupcast_check
    python -m service.manage groupcast_check --roundtrip --http-url http://http:8000 --ws-url ws://socket:8001/ws

The round trip mints a token, subscribes over WebSocket, publishes over HTTP and waits for
the message: exactly what the chart's `helm test` runs.
"""

import asyncio
import json
import urllib.error
import urllib.request
import uuid

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from service.storage.clients import REDIS_FAILURES, redis_sync

TIMEOUT = 10


class Command(BaseCommand):
    help = "Check settings and Redis; --roundtrip also publishes and receives through the service."

    def add_arguments(self, parser):
        parser.add_argument("--roundtrip", action="store_true")
        parser.add_argument("--http-url", default="http://127.0.0.1:8000")
        parser.add_argument("--ws-url", default="ws://127.0.0.1:8001/ws")

    def handle(self, *args, roundtrip, http_url, ws_url, **options):
        # Settings were validated when Django loaded them; say what we are using.
        self.stdout.write(f"settings ok: {len(settings.GROUPCAST_API_KEYS)} API key(s), "
                          f"{len(settings.GROUPCAST_JWT_SECRETS)} JWT secret(s)")
        try:
            info = redis_sync().info("server")
        except REDIS_FAILURES as error:
            raise CommandError(f"Redis unreachable: {error}") from None
        version = info.get("redis_version", "?")
        if tuple(int(p) for p in version.split(".")[:2]) < (7, 0):
            raise CommandError(f"Redis {version} is too old: groupcast needs 7.0 or newer")
        self.stdout.write(f"redis ok: version {version}")
        if roundtrip:
            offset = asyncio.run(self.roundtrip(http_url.rstrip("/"), ws_url))
            self.stdout.write(f"roundtrip ok: received offset {offset}")

    async def roundtrip(self, http_url, ws_url):
        import websockets

        group = f"check.{uuid.uuid4().hex[:12]}"
        token = self.post(http_url, "/api/v1/tokens", {"sub": "groupcast-check", "groups": [group], "ttl": 60})["token"]
        async with websockets.connect(f"{ws_url}?token={token}", open_timeout=TIMEOUT) as socket:
            await socket.send(json.dumps({"type": "subscribe", "group": group}))
            frame = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT))
            if frame.get("type") != "subscribed":
                raise CommandError(f"expected subscribed, got {frame}")
            marker = uuid.uuid4().hex
            reply = await asyncio.to_thread(
                self.post, http_url, "/api/v1/publish", {"group": group, "data": {"check": marker}}
            )
            frame = json.loads(await asyncio.wait_for(socket.recv(), TIMEOUT))
            if frame.get("type") != "message" or frame.get("data") != {"check": marker}:
                raise CommandError(f"expected our message, got {frame}")
            if frame["offset"] != reply["offset"]:
                raise CommandError(f"offset {frame['offset']} != published {reply['offset']}")
            return frame["offset"]

    def post(self, base, path, body):
        request = urllib.request.Request(
            base + path,
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {settings.GROUPCAST_API_KEYS[0]}",
                     "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            raise CommandError(f"{path}: HTTP {error.code} {error.read()[:200]!r}") from None
        except OSError as error:
            raise CommandError(f"{path}: {error}") from None
