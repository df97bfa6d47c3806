"""Log lines: plain text by default (read by a person at a terminal), or one JSON object per
line with GROUPCAST_LOG_FORMAT=json (read by a log pipeline: the chart's default).

Every record gets the process's role and pod, and the id of the request (http) or the
connection (socket) it was logged for, when there is one. The ids live in context variables,
so they follow a request's thread and a connection's asyncio task without being passed
around; log calls need no change.

    {"time": "2026-11-29T10:00:00.123Z", "level": "WARNING", "logger": "service.socket.consumer",
     "message": "subscribe to news failed: ...", "role": "socket", "pod": "groupcast-socket-7d9f-x2k4p",
     "connection_id": "c-5f0c..."}
"""

import contextvars
import json
import logging
import os
import random
import re
import socket
import time

# What the process is: set by docker-entrypoint.sh (and the local runner) for each role;
# a management command run by hand is "manage".
ROLE = os.environ.get("GROUPCAST_ROLE") or "manage"
# Kubernetes sets HOSTNAME to the pod's name.
POD = os.environ.get("HOSTNAME") or socket.gethostname()

request_id = contextvars.ContextVar("groupcast_request_id", default=None)
connection_id = contextvars.ContextVar("groupcast_connection_id", default=None)

# A client's X-Request-ID is kept when it is a plausible id (so it can be followed across
# services), and replaced otherwise: it is written to every log line of the request.
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
REQUEST_ID_HEADER = "X-Request-ID"


# Ids that only tie log lines together, so from `random` (reseeded in every forked
# process) rather than uuid4's os.urandom: a getrandom() call per publish and per connect
# (~2% of a socket process's CPU in a connect storm, py-spy). Not secrets.


def new_request_id():
    return f"{random.getrandbits(128):032x}"


def new_connection_id():
    return f"c-{random.getrandbits(64):016x}"


def request_id_of(header_value):
    """The request's id: the client's X-Request-ID if it is a plausible one, else a new one."""
    if header_value and REQUEST_ID.fullmatch(header_value):
        return header_value
    return new_request_id()


class ContextFilter(logging.Filter):
    """Adds role, pod, request_id and connection_id to every record a handler emits."""

    def filter(self, record):
        record.role = ROLE
        record.pod = POD
        record.request_id = request_id.get()
        record.connection_id = connection_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; a traceback is a field of it, never lines of its own."""

    def format(self, record):
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "role": getattr(record, "role", ROLE),
            "pod": getattr(record, "pod", POD),
        }
        for name in ("request_id", "connection_id"):
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def json_line(level, logger, message, time=None):
    """A JSON log line written without the logging module (the front relaying nginx)."""
    import datetime

    when = time or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return json.dumps({"time": when, "level": level, "logger": logger, "message": message,
                       "role": ROLE, "pod": POD}, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def logging_config(log_format, level, loggers=None):
    """A dictConfig for Django's LOGGING (and gunicorn's logconfig_dict): one stderr handler
    with the context filter, in the chosen format."""
    formatter = {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": ContextFilter}},
        "formatters": {"groupcast": formatter},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "groupcast",
                "filters": ["context"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": loggers or {},
    }


class RequestIdMiddleware:
    """Gives each HTTP request an id (the client's X-Request-ID, or the front's, or a new
    one), logs with it, and echoes it in the answer's X-Request-ID."""

    def __init__(self, get_response):
        from django.core.signals import request_finished

        self.get_response = get_response
        # Kept until the response is closed, not reset on the way out: Django logs a 4xx or
        # 5xx ("django.request") after the middleware has returned.
        request_finished.connect(_forget_request_id, dispatch_uid="groupcast-request-id")

    def __call__(self, request):
        rid = request_id_of(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = rid
        request_id.set(rid)
        response = self.get_response(request)
        response[REQUEST_ID_HEADER] = rid
        return response


def _forget_request_id(**kwargs):
    request_id.set(None)


class JsonNewlineMiddleware:
    """JSON answers end with a newline, so `curl` output does not run into the prompt."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            not response.streaming
            and response.get("Content-Type", "").startswith("application/json")
            and not response.content.endswith(b"\n")
        ):
            response.content = response.content + b"\n"
            if response.has_header("Content-Length"):
                response["Content-Length"] = str(len(response.content))
        return response
