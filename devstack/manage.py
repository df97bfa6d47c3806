"""`make manage ARGS="<command> [options]"`: a management command (service/manage.py) from a
clone, against the stack `make run` started.

Settings come from the environment; what it leaves unset is taken from the running stack
(`.run/stack.env`: its REDIS_URL) and its development secrets (`.run/secrets.env`), so
`make manage ARGS="groupcast_token user-1 news"` mints a token the local socket accepts.
"""

import os
import sys

from devstack import ROOT

RUN = ROOT / ".run"


def environment(environ, run=RUN):
    env = dict(environ)
    for path in (run / "stack.env", run / "secrets.env"):
        if path.exists():
            for line in path.read_text().splitlines():
                name, _, value = line.partition("=")
                if name and not env.get(name):
                    env[name] = value
    env.setdefault("DJANGO_SETTINGS_MODULE", "service.settings")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def main():
    if not (RUN / "stack.env").exists() and not os.environ.get("REDIS_URL"):
        print("make manage: no `make run` stack (.run/stack.env) and no REDIS_URL: commands "
              "that need Redis will fail", file=sys.stderr)
    command = [sys.executable, "-m", "service.manage", *sys.argv[1:]]
    os.execve(sys.executable, command, environment(os.environ))


if __name__ == "__main__":
    main()
