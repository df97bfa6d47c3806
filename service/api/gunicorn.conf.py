"""gunicorn settings for the http role: `gunicorn -c service/api/gunicorn.conf.py service.wsgi`.

Sized from the environment (GUNICORN_WORKERS, GUNICORN_THREADS, GUNICORN_BIND). Metrics
use prometheus_client's multiprocess mode, so every worker process is counted once.
"""

import os

from prometheus_client import multiprocess

from service.upstream import gunicorn as gunicorn_upstream

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread"
keepalive = 5
timeout = 30
graceful_timeout = 20
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
worker_tmp_dir = os.environ.get("GUNICORN_TMP_DIR", "/tmp")
# No control socket: it would write under $HOME, which is read-only in the image.
control_socket_disable = True

# gunicorn's own refusals (a control character in a header, say) in the API's error shape.
gunicorn_upstream.json_errors()


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
