"""Running nginx with the rendered configuration, as the front's process."""

import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from service.front.config import render
from service.logs import json_line

# Directories nginx writes to (its temp paths in nginx.conf), created before it starts.
WRITABLE = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
# Files beyond connections: the listening socket, logs, the configuration being read.
SPARE_FILES = 64
# What the front's process passes on to nginx. nginx stops at once on SIGTERM, dropping
# requests in flight, and SIGTERM is what Kubernetes sends: nginx gets SIGQUIT, its
# graceful stop, instead.
FORWARDED = {signal.SIGTERM: signal.SIGQUIT, signal.SIGINT: signal.SIGQUIT,
             signal.SIGQUIT: signal.SIGQUIT, signal.SIGHUP: signal.SIGHUP}


def nginx_binary():
    """nginx on PATH, or in /usr/sbin (Debian's place, often not on a user's PATH)."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if found is None:
        raise RuntimeError("nginx is not installed (`make` installs it: hack/system-deps.sh)")
    return found


def prepare(config):
    """Write the configuration into the front's directory; return its path."""
    directory = Path(config.directory)
    for name in WRITABLE:
        (directory / name).mkdir(parents=True, exist_ok=True)
    path = directory / "nginx.conf"
    path.write_text(render(config))
    return path


def raise_file_limit(config):
    """Let nginx hold GROUPCAST_HTTP_MAX_CONNECTIONS connections: raise the soft limit on
    open files as far as needed, or fail at start-up when the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = config.max_connections + SPARE_FILES
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise ImproperlyConfigured(
            f"invalid environment settings:\n  GROUPCAST_HTTP_MAX_CONNECTIONS: "
            f"{config.max_connections} connections need {needed} open files, the limit is {hard}"
        )
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def command(path):
    """nginx in the foreground on `path`; `-e stderr` before the configuration is read, so
    it never tries its compiled-in log file (read-only here)."""
    return [nginx_binary(), "-e", "stderr", "-p", str(path.parent), "-c", str(path)]


def check(config):
    """`nginx -t` on the rendered configuration: (ok, nginx's report)."""
    path = prepare(config)
    done = subprocess.run([*command(path), "-t", "-q"], capture_output=True, text=True)
    return done.returncode == 0, done.stderr


# nginx's error log line: "2026/11/29 10:00:00 [error] 12#12: *3 connect() failed ..."
NGINX_ERROR = re.compile(r"^(\d{4})/(\d\d)/(\d\d) (\d\d:\d\d:\d\d) \[(\w+)\] (.*)$")
NGINX_LEVELS = {"debug": "DEBUG", "info": "INFO", "notice": "INFO", "warn": "WARNING",
                "error": "ERROR", "crit": "CRITICAL", "alert": "CRITICAL", "emerg": "CRITICAL"}


def nginx_error_as_json(line):
    """One line of nginx's error log as a JSON line (nginx can only write it as text)."""
    found = NGINX_ERROR.match(line)
    if not found:
        return json_line("INFO", "nginx", line)
    year, month, day, clock, level, message = found.groups()
    # nginx writes local time; in a container that is UTC
    return json_line(NGINX_LEVELS.get(level, "INFO"), "nginx", message,
                     time=f"{year}-{month}-{day}T{clock}Z")


def _relay_as_json(stream):
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        if line:
            # One write for the line and its newline: nginx's access log shares the file,
            # and print()'s two writes (unbuffered, as under PYTHONUNBUFFERED) let an access
            # line land between them, two JSON objects on one line.
            sys.stderr.write(nginx_error_as_json(line) + "\n")
            sys.stderr.flush()


def run(config):
    """Run nginx until it exits, passing signals on (FORWARDED); return its exit status."""
    path = prepare(config)
    raise_file_limit(config)
    received = []

    def forward(signum, frame):
        received.append(signum)
        if nginx is not None:
            nginx.send_signal(FORWARDED[signum])

    nginx = None
    for signum in FORWARDED:
        signal.signal(signum, forward)
    as_json = config.log_format == "json"
    nginx = subprocess.Popen(command(path), stderr=subprocess.PIPE if as_json else None)
    relay = None
    if as_json:
        relay = threading.Thread(target=_relay_as_json, args=(nginx.stderr,), name="nginx-log", daemon=True)
        relay.start()
    if received:  # a stop that came while nginx was starting
        nginx.send_signal(FORWARDED[received[-1]])
    status = nginx.wait()
    if relay is not None:
        relay.join(5)  # nginx's last lines (its shutdown) are written before we exit
    return 128 - status if status < 0 else status
