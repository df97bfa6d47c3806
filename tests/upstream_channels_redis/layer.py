"""The layer under channels_redis's own tests, pointed at the test Redis.

The suite addresses Redis as redis://localhost:6379 (and databases 0-9 there); this
subclass only rewrites that address to the Redis of the test run, so the suite runs
unchanged against GroupcastChannelLayer.
"""

import os
from urllib.parse import urlsplit

from service.layer import GroupcastChannelLayer as Layer

UPSTREAM_ADDRESS = "redis://localhost:6379"


def _test_redis():
    parts = urlsplit(os.environ["REDIS_URL"])
    return f"{parts.scheme}://{parts.netloc}"


class GroupcastChannelLayer(Layer):
    def __init__(self, hosts=None, **kwargs):
        hosts = [_redirect(host) for host in hosts or [UPSTREAM_ADDRESS]]
        super().__init__(hosts=hosts, **kwargs)


def _redirect(host):
    if isinstance(host, str) and host.startswith(UPSTREAM_ADDRESS):
        return _test_redis() + host[len(UPSTREAM_ADDRESS):]
    return host
