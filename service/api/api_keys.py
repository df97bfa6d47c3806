"""API keys: what the publish, token, job and group endpoints authenticate with."""

import hmac

from django.conf import settings


def api_key_valid(presented):
    """True when `presented` is one of GROUPCAST_API_KEYS.

    Every key is compared in constant time, and all of them every time, so neither
    timing nor an early exit tells which key (or how much of it) matched.
    """
    if not presented:
        return False
    presented = presented.encode()
    matched = False
    for key in settings.GROUPCAST_API_KEYS:
        matched |= hmac.compare_digest(presented, key.encode())
    return matched
