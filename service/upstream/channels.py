"""Channels' worker and consumer, where groupcast changes their inner loops
(channels 4.3.2, channels/worker.py and channels/consumer.py).
"""

from channels.consumer import get_handler_name
from channels.worker import Worker


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
    """AsyncConsumer.dispatch (consumer.py) for a consumer without a database: none of
    Channels' per-message connection cleanup (a thread hop per frame), and an event of
    unknown type handed to `unknown_event` instead of raising."""

    async def dispatch(self, message):
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            self.unknown_event(message)
            return
        await handler(message)

    def unknown_event(self, message):
        """Called with an event no handler takes."""
