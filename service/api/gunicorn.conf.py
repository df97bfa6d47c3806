"""gunicorn settings for the http role: `gunicorn -c service/api/gunicorn.conf.py service.wsgi`.

Sized from the environment (GUNICORN_WORKERS, GUNICORN_THREADS, GUNICORN_BIND). Metrics
use prometheus_client's multiprocess mode, so every worker process is counted once.

gunicorn listens on loopback behind the front (service/front, nginx in the same pod),
which reads every request whole before passing it on: gthread holds a thread while a
request arrives, so clients must never reach gunicorn directly.
"""

import os

from prometheus_client import multiprocess

from service.environment import Environment
from service.logs import logging_config
from service.upstream import gunicorn as gunicorn_upstream

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8080")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
# The front keeps idle connections for 4 s (service/front/nginx.conf): less than this.
keepalive = 5
timeout = 30
graceful_timeout = 20
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
worker_tmp_dir = os.environ.get("GUNICORN_TMP_DIR", "/tmp")
# No control socket: it would write under $HOME, which is read-only in the image.
control_socket_disable = True
# The front answers 414/431 past GROUPCAST_MAX_HEADER_BYTES (at most 65536) per line: admit
# whatever it passes on (it writes "Name:value" as "Name: value", a byte longer).
limit_request_line = 0  # no limit of gunicorn's own below its 1 MB ceiling
limit_request_fields = 32768
limit_request_field_size = 2 * 65536

# gunicorn's own refusals (a control character in a header, say) in the API's error shape.
gunicorn_upstream.json_errors()

# gunicorn's own log lines (boot, workers, timeouts) in the service's format: with
# GROUPCAST_LOG_FORMAT=json, JSON lines with role and pod like every other line of the pod.
# Checked here too, because gunicorn logs before Django reads its settings.
_env = Environment()
_log_format = _env.str("GROUPCAST_LOG_FORMAT", default="text", choices=("text", "json"))
_log_level = _env.str("GROUPCAST_LOG_LEVEL", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
_env.check()
if _log_format == "json":
    logconfig_dict = logging_config(_log_format, _log_level, {
        "gunicorn.error": {"handlers": ["console"], "level": _log_level, "propagate": False},
        # A logging configuration turns gunicorn's access log on; the front logs every
        # request already, so only GUNICORN_ACCESS_LOG asks for these.
        "gunicorn.access": {"handlers": ["console"], "level": "INFO" if accesslog else "CRITICAL",
                            "propagate": False},
    })


def on_starting(server):
    # A cluster REDIS_URL naming a single server stops the start here, saying so.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "service.settings")
    import django

    django.setup()
    from service.storage.clients import startup_check

    startup_check("http")


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
