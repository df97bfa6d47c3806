"""The channel layer: a drop-in for channels_redis's RedisChannelLayer with O(1) groups.

    CHANNEL_LAYERS = {"default": {"BACKEND": "service.layer.GroupcastChannelLayer",
                                  "CONFIG": {"hosts": [("127.0.0.1", 6379)]}}}
"""

from service.layer.channel_layer import GroupcastChannelLayer

__all__ = ["GroupcastChannelLayer"]
