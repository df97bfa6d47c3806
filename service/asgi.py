"""The socket role's application (`python -m service.socket.server`, or plain Daphne).

/ws is the WebSocket endpoint; /healthz, /readyz and /metrics answer over HTTP beside
it; the `channel` routes are what `runworker` serves in the worker role.
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "service.settings")
django.setup(set_prefix=False)

from channels.routing import ChannelNameRouter  # noqa: E402

from service.socket.consumer import GroupcastConsumer  # noqa: E402
from service.socket.probes import probes_app, websocket_not_found  # noqa: E402
from service.socket.sse import sse_app  # noqa: E402
from service.worker.consumers import EventsConsumer, JobsConsumer  # noqa: E402

channels = ChannelNameRouter(
    {
        "groupcast.jobs": JobsConsumer.as_asgi(),
        "groupcast.events": EventsConsumer.as_asgi(),
    }
)


def application(scope, receive, send):
    """The routes, chosen here rather than by Channels' ProtocolTypeRouter and URLRouter:
    their coroutine frames and copies of the scope stay alive as long as the connection
    they routed (~1.5 kB of every idle WebSocket). Returns the chosen application's
    coroutine for the server to run."""
    kind = scope["type"]
    if kind == "websocket":
        if scope["path"] == "/ws":
            return GroupcastConsumer()(scope, receive, send)
        return websocket_not_found(scope, receive, send)
    if kind == "http":
        return (sse_app if scope["path"] == "/sse" else probes_app)(scope, receive, send)
    if kind == "channel":
        return channels(scope, receive, send)
    raise ValueError(f"no application for scope type {kind!r}")


# A plain function returning a coroutine is ASGI 3 all the same; the hint stops asgiref
# (Daphne, the test communicators) from wrapping it as an ASGI 2 double callable.
application._asgi_single_callable = True
