"""groupcast's management commands, one entry point from a clone and in the image:

    .venv/bin/python -m service.manage <command> [options]     # from a clone (make manage ARGS=...)
    docker-entrypoint.sh <command> [options]                   # in the image

    groupcast_token user-1 news sports --ttl 3600     print a client token
    groupcast_publish news '{"text": "hello"}'        publish, print the offset
    groupcast_check [--roundtrip ...]                 settings, Redis, a full round trip

Settings come from the environment, as for every role. Asking for help (`help`, `--help`,
`<command> --help`) needs none of them: it is answered with placeholder settings that can
reach nothing (service/settings_help.py).
"""

import os
import sys

HELP_FLAGS = {"-h", "--help"}


def wants_help(argv):
    """True when the command line only asks for help (or names no command at all)."""
    args = argv[1:]
    return not args or args[0] in HELP_FLAGS | {"help"} or bool(HELP_FLAGS & set(args[1:]))


def settings_module(argv, environ):
    if wants_help(argv):
        # Help never needs real settings; with the real ones missing, Django would list only
        # its own commands and not know groupcast's.
        from django.core.exceptions import ImproperlyConfigured

        try:
            __import__(environ.get("DJANGO_SETTINGS_MODULE") or "service.settings")
        except ImproperlyConfigured:
            return "service.settings_help"
    return environ.get("DJANGO_SETTINGS_MODULE") or "service.settings"


def main(argv=None):
    argv = list(sys.argv if argv is None else argv)
    argv[0] = "python -m service.manage"
    from django.core.exceptions import ImproperlyConfigured
    from django.core.management import execute_from_command_line

    try:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings_module(argv, os.environ)
        execute_from_command_line(argv)
    except ImproperlyConfigured as error:
        # the variables to set, not a traceback
        print(f"{argv[0]}: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
