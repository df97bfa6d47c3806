"""Channels' worker and consumer, where groupcast changes their inner loops
(channels 4.3.2, channels/worker.py and channels/consumer.py).
"""

import itertools

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.worker import Worker

_connection_ids = itertools.count()


class GatedWorker(Worker):
    """Channels' Worker whose listener may wait for something before each receive."""

    async def before_receive(self, channel):
        """Called before the listener takes the next message off `channel`."""

    def listener_scope(self, channel):
        return {"type": "channel", "channel": channel}

    async def receive(self, channel):
        return await self.channel_layer.receive(channel)

    async def listener(self, channel):
        """Worker.listener (worker.py), with before_receive, receive and listener_scope
        as seams."""
        scope = self.listener_scope(channel)
        while True:
            await self.before_receive(channel)
            message = await self.receive(channel)
            if not message.get("type"):
                raise ValueError("Worker received message with no type.")
            queue = self.get_or_create_application_instance(channel, scope)
            await queue.put(message)


class LeanDispatch:
    """AsyncConsumer for a consumer that takes nothing from the channel layer and uses no
    database (consumer.py, __call__ and dispatch).

    __call__: no channel of its own in the layer and one plain receive loop, where
    Channels keeps a layer channel, a task per source and asyncio.wait per message — a
    few kB and a thread hand-off per connection that a groupcast WebSocket never uses.
    `channel_name` is still unique in the process. dispatch: none of Channels'
    per-message connection cleanup (a thread hop per frame), and an event of unknown type
    handed to `unknown_event` instead of raising. websocket_disconnect: the same without
    that cleanup's thread hop at the close (generic/websocket.py) nor layer groups to
    leave (there is no layer channel).
    """

    async def __call__(self, scope, receive, send):
        self.scope = scope
        self.channel_layer = None
        self.channel_name = f"groupcast.connection!{next(_connection_ids)}"
        self.base_send = send
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            self.unknown_event(message)
            return
        await handler(message)

    async def websocket_disconnect(self, message):
        await self.disconnect(message["code"])
        raise StopConsumer()

    def unknown_event(self, message):
        """Called with an event no handler takes."""
