"""Running nginx with the rendered configuration, as the front's process."""

import resource
import shutil
import signal
import subprocess
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from service.front.config import render

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
    nginx = subprocess.Popen(command(path))
    if received:  # a stop that came while nginx was starting
        nginx.send_signal(FORWARDED[received[-1]])
    status = nginx.wait()
    return 128 - status if status < 0 else status
