"""The stock consumer: a member of one group, relaying what is sent to the group; what
its client sends as {"type": "publish", "group", "data"} it group_sends."""

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

    async def receive_json(self, content, **kwargs):
        """Called for each frame from the client: a publish is group_sent, as the
        Channels tutorial's chat consumer does (no reply)."""
        if content.get("type") == "publish":
            await self.channel_layer.group_send(
                content["group"],
                {"type": "group.message", "group": content["group"], "data": content["data"]},
            )

    async def group_message(self, event):
        """Called for each message sent to the group."""
        await self.send_json({"type": "message", "group": event["group"], "data": event["data"]})
