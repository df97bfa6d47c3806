"""Typed settings from environment variables; every problem names its variable."""

import base64
import binascii
import os
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

REQUIRED = object()


class Environment:
    """Reads typed values from the environment and collects every problem, so that
    start-up fails once, listing each bad or missing variable by name."""

    def __init__(self, environ=None):
        self.environ = os.environ if environ is None else environ
        self.problems = []

    def _raw(self, name, default):
        value = self.environ.get(name, "").strip()
        if value:
            return value
        if default is REQUIRED:
            self.problems.append(f"{name}: required but not set")
        return None

    def str(self, name, default=REQUIRED, *, min_length=0, choices=None):
        value = self._raw(name, default)
        if value is None:
            return None if default is REQUIRED else default
        if len(value) < min_length:
            self.problems.append(f"{name}: must be at least {min_length} characters long")
        if choices and value not in choices:
            self.problems.append(f"{name}: must be one of {', '.join(choices)}, got {value!r}")
        return value

    def int(self, name, default=REQUIRED, *, minimum=None, maximum=None):
        return self._number(int, "an integer", name, default, minimum, maximum)

    def float(self, name, default=REQUIRED, *, minimum=None, maximum=None):
        return self._number(float, "a number", name, default, minimum, maximum)

    def _number(self, kind, described, name, default, minimum, maximum):
        value = self._raw(name, default)
        if value is None:
            return None if default is REQUIRED else default
        try:
            number = kind(value)
        except ValueError:
            self.problems.append(f"{name}: must be {described}, got {value!r}")
            return default if default is not REQUIRED else None
        if minimum is not None and number < minimum:
            self.problems.append(f"{name}: must be at least {minimum}, got {number}")
        if maximum is not None and number > maximum:
            self.problems.append(f"{name}: must be at most {maximum}, got {number}")
        return number

    def bool(self, name, default):
        value = self._raw(name, default)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name}: must be true or false, got {value!r}")
        return default

    def list(self, name, default=REQUIRED, *, min_length=0):
        """A comma-separated list; empty items are ignored."""
        value = self._raw(name, default)
        if value is None:
            return [] if default is REQUIRED else list(default)
        items = [item.strip() for item in value.split(",") if item.strip()]
        short = [item for item in items if len(item) < min_length]
        if short:
            self.problems.append(
                f"{name}: every item must be at least {min_length} characters long"
            )
        return items

    def url(self, name, default=REQUIRED, *, schemes, problem=None):
        """A URL of one of `schemes`; `problem(value)` may say what else is wrong with it."""
        value = self._raw(name, default)
        if value is None:
            return None if default is REQUIRED else default
        scheme = urlsplit(value).scheme
        if scheme not in schemes:
            self.problems.append(
                f"{name}: must be a URL starting with one of "
                f"{', '.join(s + '://' for s in schemes)}"
            )
        elif problem is not None and problem(value):
            self.problems.append(f"{name}: {problem(value)}")
        return value

    def keys(self, name, *, prefix, min_bytes, max_bytes):
        """A comma-separated list of base64 keys, each optionally behind `prefix` (as in
        `whsec_<base64>`), decoded; empty when unset. A bad item is named by its position,
        never shown: it is a secret."""
        value = self._raw(name, None)
        if value is None:
            return []
        keys = []
        for position, item in enumerate((i.strip() for i in value.split(",") if i.strip()), 1):
            try:
                key = base64.b64decode(item.removeprefix(prefix), validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if not min_bytes <= len(key) <= max_bytes:
                self.problems.append(
                    f"{name}: item {position} must be base64 of {min_bytes} to {max_bytes} bytes, "
                    f"optionally prefixed {prefix}"
                )
            keys.append(key)
        return keys

    def require(self, name, reason):
        """Record `name` as missing if it is unset: for a setting needed only with others."""
        if not self.environ.get(name, "").strip():
            self.problems.append(f"{name}: required {reason}")

    def check(self):
        """Raise one error listing every problem found so far."""
        if self.problems:
            listing = "\n  ".join(self.problems)
            raise ImproperlyConfigured(f"invalid environment settings:\n  {listing}")
