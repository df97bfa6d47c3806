"""The stock consumer: a member of one group, relaying what is sent to the group."""

from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class GroupRelayConsumer(AsyncJsonWebsocketConsumer):
    """Joins the group named by `?group=` before accepting, then relays every
    `group.message` event to its client as {"type": "message", "group", "data"}."""

    group = None

    async def connect(self):
        """Called on the WebSocket handshake."""
        query = parse_qs(self.scope["query_string"].decode("latin-1"))
        self.group = query.get("group", [""])[0]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code):
        """Called when the socket closes."""
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def group_message(self, event):
        """Called for each message sent to the group."""
        await self.send_json({"type": "message", "group": event["group"], "data": event["data"]})
