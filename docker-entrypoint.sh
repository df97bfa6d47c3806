#!/bin/sh
# The image's entry point: the first argument picks the role.
#   http        gunicorn with uvicorn workers (ASGI): API, tokens, jobs, demo page, /metrics; on loopback
#               (GUNICORN_BIND, 127.0.0.1:8080), reached only through http-front
#   http-front  nginx in front of it, in the same pod: the http role's port (8000)
#   socket      Daphne (ASGI) with graceful drain: /ws and /metrics on GROUPCAST_SOCKET_PORT
#   worker      runworker on the fixed channels; /metrics on GROUPCAST_METRICS_PORT
#   other       a management command, `python -m service.manage` (e.g. `groupcast_token user-1
#               news`, `groupcast_check --roundtrip ...`); `--help` lists them, needing no settings
# Every branch execs, so the server is PID 1 and receives SIGTERM itself (http-front's
# Python parent passes it on to nginx as SIGQUIT, nginx's graceful stop).
set -eu

role=${1:-http}
[ "$#" -gt 0 ] && shift
# Every log line says which role wrote it (service/logs.py); management commands are "manage".
case "$role" in
  http|http-front|socket|worker) GROUPCAST_ROLE=$role ;;
  *) GROUPCAST_ROLE=manage ;;
esac
export GROUPCAST_ROLE

case "$role" in
  http)
    # prometheus_client multiprocess mode: files of dead processes from an earlier run would
    # be summed in, so empty the directory (it may be an emptyDir mount: keep the directory).
    dir=${PROMETHEUS_MULTIPROC_DIR:-/tmp/prometheus}
    mkdir -p "$dir"
    find "$dir" -mindepth 1 -delete
    export PROMETHEUS_MULTIPROC_DIR="$dir"
    export GUNICORN_BIND="${GUNICORN_BIND:-127.0.0.1:8080}"
    exec gunicorn -c /app/service/api/gunicorn.conf.py "$@"
    ;;
  http-front)
    unset PROMETHEUS_MULTIPROC_DIR
    exec python -m service.front "$@"
    ;;
  socket)
    # Multiprocess metrics are for gunicorn's forked workers only.
    unset PROMETHEUS_MULTIPROC_DIR
    exec python -m service.socket.server --bind 0.0.0.0 --port "${GROUPCAST_SOCKET_PORT:-8001}" \
      --proxy-headers "$@" service.asgi:application
    ;;
  worker)
    unset PROMETHEUS_MULTIPROC_DIR
    # groupcast's runworker handles SIGTERM itself: it hands running jobs back and exits 0.
    exec python -m django runworker "$@" groupcast.jobs groupcast.events
    ;;
  help|-h|--help)
    sed -n '2,10s/^# \{0,1\}//p' "$0"
    echo
    exec python -m service.manage help
    ;;
  *)
    unset PROMETHEUS_MULTIPROC_DIR
    exec python -m service.manage "$role" "$@"
    ;;
esac
