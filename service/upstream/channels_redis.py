"""channels_redis's RedisChannelLayer, with names for the internals groupcast's layer
builds on (channels_redis 4.3.0, channels_redis/core.py).
"""

import collections

from channels_redis.core import RedisChannelLayer as UpstreamLayer


class RedisChannelLayer(UpstreamLayer):
    """channels_redis's layer; `mailbox_class` replaces its per-channel receive buffer."""

    mailbox_class = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.mailbox_class is not None:
            # core.py keeps one BoundedQueue per process-local channel in receive_buffer
            self.receive_buffer = collections.defaultdict(self.mailbox_class)

    def is_process_local(self, channel):
        """True for a channel made by this layer's new_channel() (core.py: the
        `<prefix>.<client_prefix>!<id>` names that receive() buffers)."""
        return "!" in channel and self.non_local_name(channel).endswith(self.client_prefix + "!")

    def group_key(self, group):
        """The sorted set of a group's members added the channels_redis way (core.py _group_key)."""
        return self._group_key(group)

    def group_connection(self, group):
        """The Redis connection channels_redis uses for `group` (its consistent hash)."""
        return self.connection(self.consistent_hash(group))

    async def receive_from_redis(self, channel):
        """(target channel, message): one message off `channel` in Redis, waiting for it
        (core.py receive_single)."""
        return await self.receive_single(channel)
