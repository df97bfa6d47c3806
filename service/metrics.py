"""Every groupcast metric, in one catalogue.

Labels are bounded (role, reason, status, code, view): never a group name, token or
user, so the number of series does not grow with traffic. The http role runs under
gunicorn in prometheus_client's multiprocess mode; the socket and worker roles are
single processes.
"""

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SLOW = (0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900)

# http (and workers, which publish jobs)
PUBLISHES = Counter("groupcast_publish", "Messages stored and announced to a group.")
PUBLISH_ERRORS = Counter(
    "groupcast_publish_errors", "Publishes refused or failed, by reason.", ["reason"]
)
PUBLISH_SECONDS = Histogram(
    "groupcast_publish_seconds", "Time to store and announce one message.", buckets=FAST
)
JOBS_REFUSED = Counter(
    "groupcast_jobs_refused",
    "POST /jobs refused, by reason: rate, delay or at outside their bounds (400), "
    "queue_full (GROUPCAST_JOB_MAX_QUEUED jobs waiting, 503), or the request's error code.",
    ["reason"],
)
HTTP_REQUESTS = Counter(
    "groupcast_http_requests", "HTTP API requests, by view and status.", ["view", "status"]
)

# socket
DELIVERIES = Counter("groupcast_deliveries", "Message frames written to clients.")
DROPPED = Counter(
    "groupcast_dropped",
    "Messages not written to a member, by reason (each is recoverable by offset).",
    ["reason"],
)
DISCONNECTS = Counter(
    "groupcast_disconnects", "WebSocket connections closed, by close code.", ["code"]
)
FANOUT_SECONDS = Histogram(
    "groupcast_fanout_seconds",
    "From an announcement reaching this process to its last local write (once per burst: a "
    "group's announcements heard in one pass of the event loop, timed from the first).",
    buckets=FAST,
)
DELIVERY_LAG = Histogram(
    "groupcast_delivery_lag_seconds",
    "From a message being stored to its frames being written.",
    buckets=LAG,
)
RECOVERED = Counter(
    "groupcast_recovered", "Messages replayed from history (since, or after a lost link)."
)
CLIENT_ERRORS = Counter(
    "groupcast_client_errors", "Client frames answered with an error, by code.", ["code"]
)
DROPPED_FRAMES = Counter(
    "groupcast_client_frames_dropped",
    "Client frames dropped on arrival, over the client's rate (it is closed with 4008).",
)
HANDSHAKES_REFUSED = Counter(
    "groupcast_handshakes_refused",
    "Connections closed before becoming a WebSocket, by reason: timeout "
    "(GROUPCAST_HANDSHAKE_TIMEOUT) or over_limit (GROUPCAST_MAX_PENDING_HANDSHAKES).",
    ["reason"],
)
API_DISCONNECTS = Counter(
    "groupcast_api_disconnects", "Connections closed with 4009 by POST /api/v1/disconnect."
)
TOKEN_REFRESHES = Counter(
    "groupcast_token_refreshes", "Tokens refreshed over an open WebSocket, by outcome.", ["outcome"]
)
CLIENT_PUBLISHES = Counter(
    "groupcast_client_publishes", "Publish frames from clients, by outcome.", ["outcome"]
)
REBALANCED = Counter(
    "groupcast_rebalanced",
    "Connections closed with 1012 to move them to less loaded socket processes (or aged out).",
)
SSE_STREAMS = Counter("groupcast_sse_streams", "Server-Sent Events streams opened.")
LINK_LOSSES = Counter(
    "groupcast_redis_link_losses",
    "Times this socket process declared its Redis pub/sub link lost and resubscribed, by "
    "reason: silent (pings unanswered for GROUPCAST_REDIS_PING_MISSES periods) or error "
    "(the connection failed).",
    ["reason"],
)
SUBSCRIBE_PROXY = Counter(
    "groupcast_subscribe_proxy_requests",
    "Subscribes put to GROUPCAST_SUBSCRIBE_PROXY_URL, by outcome: allowed (2xx), forbidden "
    "(403), error (any other answer, or no connection) or timeout; the last two answer "
    "the client unavailable.",
    ["outcome"],
)
CONNECTION_SINKS = Counter(
    "groupcast_connection_sinks",
    "WebSocket connections opened, by how their frames are written: direct (the fast "
    "path onto Daphne's transport) or asgi (through ASGI send).",
    ["sink"],
)

# worker
# Bulk broadcasts; webhook deliveries, also run as jobs, are counted on their own below.
JOBS = Counter(
    "groupcast_jobs",
    "Broadcast job runs finished, by status: done, retried, failed, lost (taken over), "
    "timed_out (past GROUPCAST_JOB_MAX_SECONDS), expired (not started within "
    "GROUPCAST_JOB_QUEUE_TTL).",
    ["status"],
)
JOB_SECONDS = Histogram("groupcast_job_seconds", "Time to run one broadcast job.", buckets=SLOW)
PROBE_REFUSED = Counter(
    "groupcast_probe_refused",
    "Connections to the worker's probe/metrics listener closed for a limit, by reason: "
    "timeout (GROUPCAST_METRICS_TIMEOUT), too_large (GROUPCAST_METRICS_MAX_REQUEST_BYTES), "
    "bad_request, over_capacity (GROUPCAST_METRICS_MAX_CONNECTIONS).",
    ["reason"],
)
WEBHOOK_DELIVERIES = Counter(
    "groupcast_webhook_deliveries",
    "Webhook delivery attempts, by outcome: delivered (2xx), retried (a failure, to be "
    "tried again), rejected (a 4xx other than 408/429: not retried) or failed (out of attempts).",
    ["outcome"],
)

# socket (sent, dropped) and worker (received, delivered, webhook_failed)
EVENTS = Counter("groupcast_events", "Connection events handled, by status.", ["status"])

# every role
REDIS_UP = Gauge(
    "groupcast_redis_up", "1 when this process reached Redis on its last attempt.",
    ["role"], multiprocess_mode="livemostrecent",
)
REDIS_SHARD_UP = Gauge(
    "groupcast_redis_shard_up",
    "On a Redis Cluster: 1 when this process reached the shard (its master's index among "
    "the masters, by first slot) on its last attempt, 0 when not. Only the shards the role "
    "depends on, and no series on a single Redis.",
    ["role", "shard"], multiprocess_mode="livemostrecent",
)
REDIS_ERRORS = Counter(
    "groupcast_redis_errors",
    "Redis commands that failed, by role (layer: the channel layer's own links, in "
    "whichever role runs it).",
    ["role"],
)


# The label values each role can produce, created at start-up so that every series
# exists (at 0) before its first event: rate() and alerts then see data from the start.
ROLE_LABELS = {
    "http": [
        (PUBLISH_ERRORS, ["bad_json", "bad_request", "bad_group", "too_large", "unsupported_media_type",
                          "unavailable", "not_replicated"]),
        (JOBS_REFUSED, ["rate", "delay", "at", "queue_full", "bad_json", "bad_request", "bad_group", "too_large",
                        "unsupported_media_type"]),
    ],
    "socket": [
        (DROPPED, ["slow_client", "closed", "channel_full", "unknown_event"]),
        (DISCONNECTS, ["1000", "1001", "1006", "1009", "1012", "1013", "4001", "4003", "4008"]),
        (CONNECTION_SINKS, ["direct", "asgi"]),
        (HANDSHAKES_REFUSED, ["timeout", "over_limit"]),
        (TOKEN_REFRESHES, ["refreshed", "refused"]),
        (CLIENT_PUBLISHES, ["published", "forbidden", "failed"]),
        (LINK_LOSSES, ["silent", "error"]),
        (EVENTS, ["sent", "dropped"]),
        (SUBSCRIBE_PROXY, ["allowed", "forbidden", "error", "timeout"]),
    ],
    "worker": [
        (JOBS, ["done", "retried", "failed", "lost", "timed_out", "expired"]),
        (EVENTS, ["received", "delivered", "webhook_failed"]),
        (WEBHOOK_DELIVERIES, ["delivered", "retried", "rejected", "failed"]),
        (PROBE_REFUSED, ["timeout", "too_large", "bad_request", "over_capacity"]),
    ],
}


class SocketGauges:
    """The socket role's gauges; created only there, so other roles do not export them."""

    def __init__(self):
        self.connections = Gauge("groupcast_connections", "Open WebSocket connections.")
        self.subscriptions = Gauge(
            "groupcast_subscriptions", "Group subscriptions held by open connections."
        )
        self.groups_local = Gauge(
            "groupcast_groups_local", "Groups with at least one member in this process."
        )
        self.presence_members = Gauge(
            "groupcast_presence_members",
            "Presence memberships held by this process (one per group and sub present here).",
        )
        self.send_queue_depth = Gauge(
            "groupcast_send_queue_depth",
            "Largest number of bytes waiting to be written to one connection.",
        )
        self.connection_limit = Gauge(
            "groupcast_connection_limit",
            "GROUPCAST_MAX_CONNECTIONS: connections this process accepts before answering 1013.",
        )
        self.event_loop_tasks = Gauge(
            "groupcast_event_loop_tasks",
            "asyncio tasks alive in this process's event loop (one per connection, plus a few).",
        )


class WorkerGauges:
    """The worker role's gauges."""

    def __init__(self):
        self.job_queue_depth = Gauge(
            "groupcast_job_queue_depth", "Jobs waiting to be run (queued, or scheduled and due)."
        )
        self.probe_connections = Gauge(
            "groupcast_probe_connections",
            "Connections open to this worker's probe/metrics listener.",
        )


_role_gauges = {}


def role_gauges(role):
    """The gauges of `role` (SocketGauges or WorkerGauges), created on first use."""
    if role not in _role_gauges:
        _role_gauges[role] = {"socket": SocketGauges, "worker": WorkerGauges}[role]()
    return _role_gauges[role]


def declare_role(role):
    """Create this role's labelled series at 0, and its Redis health at 'up'."""
    if role in ("socket", "worker"):
        role_gauges(role)
    for counter, values in ROLE_LABELS[role]:
        for value in values:
            counter.labels(value)
    REDIS_UP.labels(role).set(1)
    REDIS_ERRORS.labels(role)


def labelled(metric, *values):
    """`metric.labels(*values)`, looked up once per label values: prometheus_client
    checks, converts and locks on every `labels()` call, and the publish path counts a
    request and a Redis outcome per publish."""
    key = (metric, values)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*values)
    return child


_children = {}


def redis_ok(role):
    labelled(REDIS_UP, role).set(1)


def redis_failed(role):
    labelled(REDIS_UP, role).set(0)
    REDIS_ERRORS.labels(role).inc()


def shard_up(role, shard, up):
    if shard is not None:
        REDIS_SHARD_UP.labels(role, str(shard)).set(1 if up else 0)


def exposition():
    """The Prometheus text for this process, or for every gunicorn worker in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
