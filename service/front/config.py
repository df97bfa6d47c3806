"""The front's settings, from the environment like every role's (README, "Configuration"),
and the nginx configuration rendered from them."""

import re
from dataclasses import dataclass
from pathlib import Path

from service.environment import Environment
from service.logs import POD

TEMPLATE = Path(__file__).resolve().parent / "nginx.conf"
PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")

# Shared with service/settings.py: the front refuses a larger body with 413 before gunicorn
# is involved, and Django checks the same bound for whatever reaches it another way.
MAX_BODY_BYTES = {"default": 65536, "minimum": 256}


@dataclass(frozen=True)
class FrontConfig:
    bind: str
    upstream: str
    directory: str
    max_body_bytes: int
    max_header_bytes: int
    header_timeout: int
    body_timeout: int
    keepalive_timeout: int
    max_connections: int
    # Idle connections to gunicorn kept for reuse: a quarter of the connection budget (a
    # request in flight holds two). With nginx's usual 16, more than 16 publishes at once
    # closed the surplus after each answer and opened new ones (accept, close and TIME-WAIT
    # on both sides: ~7% of a publish's CPU at 64 concurrent clients, docs/performance.md).
    upstream_keepalive: int
    # nginx's error lines as JSON lines like the other roles' (service/front/runner.py)
    log_format: str = "text"
    # the pod's name in the access log, as the other roles' lines have it (service/logs.py);
    # nginx's $hostname where it is not a plain name
    pod: str = "$hostname"


def front_config(environ=None):
    """The front's settings; ImproperlyConfigured naming every bad or missing variable."""
    env = Environment(environ)
    max_connections = env.int("GROUPCAST_HTTP_MAX_CONNECTIONS", default=1024, minimum=16, maximum=65536)
    config = FrontConfig(
        bind=_address(env, "GROUPCAST_FRONT_BIND", "0.0.0.0:8000"),
        upstream=_address(env, "GROUPCAST_FRONT_UPSTREAM", "127.0.0.1:8080", unix=True),
        directory=_directory(env, "GROUPCAST_FRONT_DIR", "/tmp/groupcast-front"),
        max_body_bytes=env.int("GROUPCAST_MAX_BODY_BYTES", **MAX_BODY_BYTES),
        # gunicorn.conf.py admits request lines and header fields well past the maximum.
        max_header_bytes=env.int("GROUPCAST_MAX_HEADER_BYTES", default=8192, minimum=1024, maximum=65536),
        header_timeout=env.int("GROUPCAST_HTTP_HEADER_TIMEOUT", default=5, minimum=1, maximum=300),
        body_timeout=env.int("GROUPCAST_HTTP_BODY_TIMEOUT", default=5, minimum=1, maximum=300),
        keepalive_timeout=env.int("GROUPCAST_HTTP_KEEPALIVE_TIMEOUT", default=15, minimum=0, maximum=3600),
        max_connections=max_connections,
        upstream_keepalive=max_connections // 4,
        log_format=env.str("GROUPCAST_LOG_FORMAT", default="text", choices=("text", "json")),
        pod=POD if re.fullmatch(r"[A-Za-z0-9._-]{1,253}", POD) else "$hostname",
    )
    env.check()
    return config


# Characters that would end or split an nginx directive if a value carried them.
NOT_IN_NGINX_WORDS = re.compile(r"[\s;{}'\"\\$#]")


def _address(env, name, default, unix=False):
    """host:port (a bracketed IPv6 host too), or unix:/path where `unix` allows it."""
    value = env.str(name, default=default)
    if unix and value.startswith("unix:/") and not NOT_IN_NGINX_WORDS.search(value):
        return value
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535 or NOT_IN_NGINX_WORDS.search(host):
        wanted = "host:port or unix:/path" if unix else "host:port"
        env.problems.append(f"{name}: must be {wanted}, got {value!r}")
    return value


def _directory(env, name, default):
    value = env.str(name, default=default)
    if not value.startswith("/") or NOT_IN_NGINX_WORDS.search(value):
        env.problems.append(f"{name}: must be an absolute path without spaces or quotes, got {value!r}")
    return value


def render(config):
    """nginx.conf with every {{placeholder}} filled from `config`."""
    values = {name: str(value) for name, value in vars(config).items()}

    def fill(match):
        return values[match.group(1)]

    return PLACEHOLDER.sub(fill, TEMPLATE.read_text())
