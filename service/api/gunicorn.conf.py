"""gunicorn settings for the http role: `gunicorn -c service/api/gunicorn.conf.py`.

gunicorn manages the processes (GUNICORN_WORKERS of them, restarts, graceful stops); each
runs uvicorn's event loop (uvloop, httptools' C parser: service/upstream/uvicorn.py)
serving the ASGI application of service/api/app.py. Publishes are answered on the loop,
the rest by Django's ASGI handler, its sync code in threads. gunicorn's gthread workers
spent ~200 us of CPU per request before the application saw it, uvicorn's ~40
(docs/performance.md). Metrics use prometheus_client's multiprocess mode, so every worker
process is counted once.

gunicorn listens on loopback behind the front (service/front, nginx in the same pod),
which reads every request whole and bounds its size before passing it on: clients never
reach gunicorn directly.
"""

import os

from prometheus_client import multiprocess

from service.environment import Environment
from service.logs import logging_config

# Checked here, because gunicorn starts (and logs) before Django reads its settings.
_env = Environment()
wsgi_app = "service.api.app:application"
bind = _env.str("GUNICORN_BIND", default="127.0.0.1:8080")
# One event loop a pod by default: concurrent publishes on one loop share Redis round
# trips and the front's upstream connections, ~25% less CPU per publish than two loops
# (docs/performance.md, "One event loop"); a pod given more than a core sets more.
workers = _env.int("GUNICORN_WORKERS", default=1, minimum=1)
worker_class = "service.upstream.uvicorn.HttpWorker"
# The front keeps idle connections for 4 s (service/front/nginx.conf): less than this.
keepalive = 5
timeout = 30
graceful_timeout = 20
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
worker_tmp_dir = os.environ.get("GUNICORN_TMP_DIR", "/tmp")
# No control socket: it would write under $HOME, which is read-only in the image.
control_socket_disable = True

# gunicorn's own log lines (boot, workers, timeouts) in the service's format: with
# GROUPCAST_LOG_FORMAT=json, JSON lines with role and pod like every other line of the pod.
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


def post_worker_init(worker):
    # the application is loaded (service/api/app.py): freeze it out of the collector's scans
    from service.collector import collect_less

    collect_less()


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
