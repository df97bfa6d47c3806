"""`python -m service.front`: the http role's buffering front (nginx), configured from the
environment; `--check` only renders the configuration and tests it with `nginx -t`.

An invalid setting stops start-up naming the variable, as in every role."""

import argparse
import os
import sys

from django.core.exceptions import ImproperlyConfigured

from service.front import runner
from service.front.config import front_config
from service.logs import json_line


def main():
    parser = argparse.ArgumentParser(prog="python -m service.front", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="render the configuration and run nginx -t")
    args = parser.parse_args()
    try:
        config = front_config()
        if args.check:
            ok, report = runner.check(config)
            print(report or "nginx configuration ok", file=sys.stderr)
            return 0 if ok else 1
        return runner.run(config)
    except ImproperlyConfigured as error:
        report_failure(f"groupcast front: {error}")
        return 2
    except RuntimeError as error:  # no nginx
        report_failure(f"groupcast front: {error}")
        return 1


def report_failure(message):
    """A start-up failure, as a JSON line where the logs are JSON (checked without the
    settings, which are what failed)."""
    if os.environ.get("GROUPCAST_LOG_FORMAT", "").strip() == "json":
        message = json_line("ERROR", "service.front", message)
    print(message, file=sys.stderr)


sys.exit(main())
