"""The socket role's application (`python -m service.socket.server`, or plain Daphne).

/ws is the WebSocket endpoint; /healthz, /readyz and /metrics answer over HTTP beside
it; the `channel` routes are what `runworker` serves in the worker role.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "service.settings")
django.setup(set_prefix=False)

from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from service.socket.consumer import GroupcastConsumer  # noqa: E402
from service.socket.probes import probes_app, websocket_not_found  # noqa: E402
from service.socket.sse import sse_app  # noqa: E402
from service.worker.consumers import EventsConsumer, JobsConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": URLRouter([path("sse", sse_app), re_path(r"", probes_app)]),
        "websocket": URLRouter(
            [path("ws", GroupcastConsumer.as_asgi()), re_path(r"", websocket_not_found)]
        ),
        "channel": ChannelNameRouter(
            {
                "groupcast.jobs": JobsConsumer.as_asgi(),
                "groupcast.events": EventsConsumer.as_asgi(),
            }
        ),
    }
)
