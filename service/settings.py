"""groupcast settings: read from environment variables only.

Secrets have no defaults; a missing or malformed value stops start-up with a message
naming the variable (see README, "Configuration").
"""

from service.environment import Environment
from service.front.config import MAX_BODY_BYTES
from service.logs import logging_config
from service.storage import urls as redis_urls

env = Environment()

# Secrets and wiring
SECRET_KEY = env.str("DJANGO_SECRET_KEY", min_length=32)
# one server, a Sentinel-managed master or a Redis Cluster (service/storage/urls.py)
REDIS_URL = env.url("REDIS_URL", schemes=redis_urls.SCHEMES, problem=redis_urls.url_problem)
GROUPCAST_API_KEYS = env.list("GROUPCAST_API_KEYS", min_length=16)
# The first secret signs new tokens; every listed secret is accepted (rotation).
GROUPCAST_JWT_SECRETS = env.list("GROUPCAST_JWT_SECRET", min_length=32)
GROUPCAST_ALLOWED_ORIGINS = env.list("GROUPCAST_ALLOWED_ORIGINS", default=[])
ALLOWED_HOSTS = env.list("GROUPCAST_ALLOWED_HOSTS", default=["*"])
GROUPCAST_REDIS_PREFIX = env.str("GROUPCAST_REDIS_PREFIX", default="gc")
# With replicas (Sentinel), a publish is acknowledged only once this many replicas have it,
# so a failover cannot lose an acknowledged message.
GROUPCAST_REDIS_MIN_REPLICAS = env.int("GROUPCAST_REDIS_MIN_REPLICAS", default=0, minimum=0)
GROUPCAST_REDIS_REPLICA_TIMEOUT_MS = env.int(
    "GROUPCAST_REDIS_REPLICA_TIMEOUT_MS", default=500, minimum=1
)

# Limits
GROUPCAST_MAX_BODY_BYTES = env.int("GROUPCAST_MAX_BODY_BYTES", **MAX_BODY_BYTES)
GROUPCAST_MAX_FRAME_BYTES = env.int("GROUPCAST_MAX_FRAME_BYTES", default=16384, minimum=256)
GROUPCAST_SEND_QUEUE_BYTES = env.int("GROUPCAST_SEND_QUEUE_BYTES", default=1048576, minimum=4096)
GROUPCAST_MAX_SUBSCRIPTIONS = env.int("GROUPCAST_MAX_SUBSCRIPTIONS", default=100, minimum=1)
GROUPCAST_MAX_CONNECTIONS = env.int("GROUPCAST_MAX_CONNECTIONS", default=20000, minimum=1)
# A connection must be an open WebSocket this many seconds after it is accepted, and at
# most this many may be on their way there at once (they hold sockets before any token).
GROUPCAST_HANDSHAKE_TIMEOUT = env.float("GROUPCAST_HANDSHAKE_TIMEOUT", default=10.0, minimum=1)
GROUPCAST_MAX_PENDING_HANDSHAKES = env.int("GROUPCAST_MAX_PENDING_HANDSHAKES", default=4096, minimum=1)
GROUPCAST_CLIENT_RATE = env.float("GROUPCAST_CLIENT_RATE", default=50.0, minimum=0.1)
GROUPCAST_HISTORY_SIZE = env.int("GROUPCAST_HISTORY_SIZE", default=1000, minimum=1)
GROUPCAST_HISTORY_TTL = env.int("GROUPCAST_HISTORY_TTL", default=86400, minimum=1)
# A `since` replay sends at most the newest GROUPCAST_REPLAY_MAX messages (more: the client
# is told history_trimmed), and at most GROUPCAST_MAX_REPLAYS run at once per process: a
# replay holds one page (50 messages) in memory, so replays hold at most
# GROUPCAST_MAX_REPLAYS x 50 x GROUPCAST_MAX_BODY_BYTES.
GROUPCAST_REPLAY_MAX = env.int("GROUPCAST_REPLAY_MAX", default=1000, minimum=1)
GROUPCAST_MAX_REPLAYS = env.int("GROUPCAST_MAX_REPLAYS", default=32, minimum=1)

# Tokens
GROUPCAST_TOKEN_MAX_TTL = env.int("GROUPCAST_TOKEN_MAX_TTL", default=86400, minimum=1)
GROUPCAST_JWT_LEEWAY = env.int("GROUPCAST_JWT_LEEWAY", default=10, minimum=0, maximum=300)

# Lifecycle
GROUPCAST_DRAIN_SECONDS = env.float("GROUPCAST_DRAIN_SECONDS", default=10.0, minimum=0)
# Rebalancing (service/socket/rebalance.py): a process over the fleet's mean connections by
# more than the tolerance moves its excess at this rate; optionally, connections older than
# GROUPCAST_MAX_CONNECTION_AGE seconds (jittered) are recycled (0: never).
GROUPCAST_REBALANCE = env.bool("GROUPCAST_REBALANCE", default=True)
GROUPCAST_REBALANCE_TOLERANCE = env.float("GROUPCAST_REBALANCE_TOLERANCE", default=0.2, minimum=0)
GROUPCAST_REBALANCE_RATE = env.float("GROUPCAST_REBALANCE_RATE", default=20.0, minimum=0.1)
GROUPCAST_MAX_CONNECTION_AGE = env.float("GROUPCAST_MAX_CONNECTION_AGE", default=0, minimum=0)
# A comment line on an idle SSE stream this often, so that proxies keep it open
GROUPCAST_SSE_KEEPALIVE_SECONDS = env.float("GROUPCAST_SSE_KEEPALIVE_SECONDS", default=15.0, minimum=1)
GROUPCAST_PRESENCE_TTL = env.int("GROUPCAST_PRESENCE_TTL", default=30, minimum=3)
# Members listed in a `subscribed` frame (the rest are counted; GET .../presence pages them)
GROUPCAST_PRESENCE_LIST_MAX = env.int("GROUPCAST_PRESENCE_LIST_MAX", default=100, minimum=0)
# The socket role's pub/sub link to Redis is pinged every period it is idle, and declared
# lost (resubscribe and replay every group) once a ping has gone unanswered for MISSES
# periods: a hung link is found within (MISSES + 2) periods, a slow pong is never a loss.
GROUPCAST_REDIS_PING_SECONDS = env.float(
    "GROUPCAST_REDIS_PING_SECONDS", default=2.0, minimum=0.05, maximum=60
)
GROUPCAST_REDIS_PING_MISSES = env.int("GROUPCAST_REDIS_PING_MISSES", default=3, minimum=2, maximum=100)
GROUPCAST_JOB_LEASE_SECONDS = env.int("GROUPCAST_JOB_LEASE_SECONDS", default=30, minimum=2)
GROUPCAST_JOB_MAX_ATTEMPTS = env.int("GROUPCAST_JOB_MAX_ATTEMPTS", default=5, minimum=1)
GROUPCAST_WORKER_CONCURRENCY = env.int("GROUPCAST_WORKER_CONCURRENCY", default=4, minimum=1)
# Job bounds, so that a few jobs cannot hold every worker slot and job records cannot
# fill Redis (POST /jobs answers 400 or 503 past them, counted by reason):
# - a run's time limit; a job's rate must let it publish to all its groups within it;
GROUPCAST_JOB_MAX_SECONDS = env.int("GROUPCAST_JOB_MAX_SECONDS", default=600, minimum=1, maximum=86400)
# - how far ahead `delay` or `at` may schedule a job;
GROUPCAST_JOB_MAX_DELAY = env.int("GROUPCAST_JOB_MAX_DELAY", default=2592000, minimum=0)
# - how far in the past `at` may be (clock skew, a retried request); it then runs now;
GROUPCAST_JOB_PAST_TOLERANCE = env.int(
    "GROUPCAST_JOB_PAST_TOLERANCE", default=300, minimum=0, maximum=86400
)
# - jobs waiting at once, queued or delayed (503 queue_full above);
GROUPCAST_JOB_MAX_QUEUED = env.int("GROUPCAST_JOB_MAX_QUEUED", default=1000, minimum=1)
# - how long after its time a job not yet started is given up (no worker, say);
GROUPCAST_JOB_QUEUE_TTL = env.int("GROUPCAST_JOB_QUEUE_TTL", default=86400, minimum=60)
# - how long an ended job's status stays readable.
GROUPCAST_JOB_KEEP_SECONDS = env.int("GROUPCAST_JOB_KEEP_SECONDS", default=86400, minimum=60)
GROUPCAST_WEBHOOK_URL = env.url("GROUPCAST_WEBHOOK_URL", default=None, schemes=("http", "https"))
# The application's say on each subscribe the token allows (service/socket/subscribe_proxy.py):
# a short deadline, since the client waits for it, and a bound on requests in flight per
# socket process, so a reconnect storm cannot turn into as many requests at once.
GROUPCAST_SUBSCRIBE_PROXY_URL = env.url(
    "GROUPCAST_SUBSCRIBE_PROXY_URL", default=None, schemes=("http", "https")
)
GROUPCAST_SUBSCRIBE_PROXY_TIMEOUT = env.float(
    "GROUPCAST_SUBSCRIBE_PROXY_TIMEOUT", default=2.0, minimum=0.1, maximum=30
)
GROUPCAST_SUBSCRIBE_PROXY_CONCURRENCY = env.int(
    "GROUPCAST_SUBSCRIBE_PROXY_CONCURRENCY", default=32, minimum=1
)
# Signs webhook deliveries and subscribe proxy requests (Standard Webhooks, service/signing.py):
# `whsec_<base64>` keys of 24-64 bytes, comma-separated; each one signs, the first first.
GROUPCAST_WEBHOOK_SECRETS = env.keys(
    "GROUPCAST_WEBHOOK_SECRET", prefix="whsec_", min_bytes=24, max_bytes=64
)
if GROUPCAST_WEBHOOK_URL or GROUPCAST_SUBSCRIBE_PROXY_URL:
    env.require(
        "GROUPCAST_WEBHOOK_SECRET", "with GROUPCAST_WEBHOOK_URL or GROUPCAST_SUBSCRIBE_PROXY_URL"
    )
GROUPCAST_METRICS_PORT = env.int("GROUPCAST_METRICS_PORT", default=9102, minimum=1, maximum=65535)
GROUPCAST_METRICS_HOST = env.str("GROUPCAST_METRICS_HOST", default="0.0.0.0")
# The worker's probe/metrics listener: seconds for a whole request (accept to last byte
# answered, not renewed per byte), the largest request head, and the connections open at
# once (at the bound the one idle longest is closed, so probes always get in).
GROUPCAST_METRICS_TIMEOUT = env.float("GROUPCAST_METRICS_TIMEOUT", default=5.0, minimum=0.1, maximum=60)
GROUPCAST_METRICS_MAX_REQUEST_BYTES = env.int(
    "GROUPCAST_METRICS_MAX_REQUEST_BYTES", default=8192, minimum=512, maximum=65536
)
GROUPCAST_METRICS_MAX_CONNECTIONS = env.int(
    "GROUPCAST_METRICS_MAX_CONNECTIONS", default=100, minimum=1, maximum=10000
)

# Demo page: where browsers open the WebSocket (default: /ws on the page's own host)
GROUPCAST_WS_URL = env.url("GROUPCAST_WS_URL", default="", schemes=("ws", "wss"))

LOG_LEVEL = env.str(
    "GROUPCAST_LOG_LEVEL", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR")
)
# text for a terminal (the local default); json, one object per line with role, pod and
# request/connection ids, for a log pipeline (the chart's default). See service/logs.py.
LOG_FORMAT = env.str("GROUPCAST_LOG_FORMAT", default="text", choices=("text", "json"))
env.check()

DEBUG = False
INSTALLED_APPS = [
    # before channels, so that its runworker (metrics, job scheduling) takes precedence
    "service",
    "channels",
]
MIDDLEWARE = [
    # outermost: every answer, errors included, carries the request's id and ends its JSON
    # with a newline
    "service.logs.RequestIdMiddleware",
    # after the newline is added: the length of what is sent
    "service.api.content_length.ContentLengthMiddleware",
    "service.logs.JsonNewlineMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "service.api.errors.JsonErrorMiddleware",
]
ROOT_URLCONF = "service.urls"
WSGI_APPLICATION = "service.wsgi.application"
ASGI_APPLICATION = "service.asgi.application"
DATABASES = {}
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]
USE_TZ = True
TIME_ZONE = "UTC"
# Bodies are limited by GROUPCAST_MAX_BODY_BYTES in the API views, answering 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = GROUPCAST_MAX_BODY_BYTES
SECURE_CONTENT_TYPE_NOSNIFF = True

# The layer's prefix is groupcast's own: a group's Channels events travel on the same
# pub/sub channel as its published messages (service/storage/keys.py, fanout_channel).
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "service.layer.GroupcastChannelLayer",
        "CONFIG": {"redis_url": REDIS_URL, "prefix": GROUPCAST_REDIS_PREFIX},
    }
}

LOGGING = logging_config(LOG_FORMAT, LOG_LEVEL, {"django.channels.server": {"level": "WARNING"}})
