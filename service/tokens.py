"""Client tokens: HS256 JWTs naming the subject, the groups it may subscribe to and
publish to (exact names, or prefixes ending in `*`), and what others see of it (`info`)."""

import json
import time
from dataclasses import dataclass

import jwt
from django.conf import settings
from jwt.algorithms import HMACAlgorithm

from service.groups import GroupPatterns, group_patterns, is_group_pattern
from service.upstream.pyjwt import hmac_decoder

INFO_MAX_BYTES = 1024

ALGORITHM = "HS256"
# every socket connect verifies a token: with each secret's key checks made once
_decoder = hmac_decoder(ALGORITHM, HMACAlgorithm.SHA256)


class TokenError(Exception):
    """A token that does not authenticate a client; the message says why."""


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    groups: GroupPatterns  # what it may subscribe to
    publish: GroupPatterns  # what it may publish to over its WebSocket
    info: dict | None  # shown to the other members of its presence groups
    exp: float


def token_issue(*, sub, groups, ttl, publish=(), info=None, now=None):
    """Sign a token for `sub` allowed into `groups` (and to publish to `publish`) for
    `ttl` seconds."""
    issued = int(now if now is not None else time.time())
    payload = {"sub": sub, "groups": list(groups), "iat": issued, "nbf": issued, "exp": issued + ttl}
    if publish:
        payload["publish"] = list(publish)
    if info is not None:
        payload["info"] = info
    return jwt.encode(payload, settings.GROUPCAST_JWT_SECRETS[0], algorithm=ALGORITHM)


def info_valid(info):
    """True for what `info` may be: a JSON object of at most 1 kB."""
    if not isinstance(info, dict):
        return False
    try:
        return len(json.dumps(info, separators=(",", ":"), ensure_ascii=False).encode()) <= INFO_MAX_BYTES
    except (TypeError, ValueError):
        return False


def token_verify(token):
    """The claims of a valid token; TokenError otherwise.

    The algorithm is pinned (no `none`, no swaps), `exp` is required, `nbf`/`iat` are
    honoured with GROUPCAST_JWT_LEEWAY, and every configured secret is accepted so
    secrets can be rotated.
    """
    if not token:
        raise TokenError("missing token")
    last_error = None
    for secret in settings.GROUPCAST_JWT_SECRETS:
        try:
            payload = _decoder.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                leeway=settings.GROUPCAST_JWT_LEEWAY,
                options={"require": ["exp", "sub"]},
            )
        except jwt.InvalidSignatureError as error:
            last_error = error
            continue
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenError("token not yet valid") from None
        except jwt.InvalidTokenError as error:
            raise TokenError(f"invalid token: {error}") from None
        return _claims(payload)
    raise TokenError("invalid token: bad signature") from last_error


def _claims(payload):
    exp = payload["exp"]
    # PyJWT takes "exp": "10**30" or 1e30 as valid; a token must end within the lifetime
    # this deployment issues (a leaked one otherwise works for ever).
    if type(exp) not in (int, float):
        raise TokenError("invalid token: exp must be a number")
    if exp - time.time() > settings.GROUPCAST_TOKEN_MAX_TTL + settings.GROUPCAST_JWT_LEEWAY:
        raise TokenError("invalid token: exp is further away than GROUPCAST_TOKEN_MAX_TTL")
    sub, groups, publish = payload["sub"], payload.get("groups", []), payload.get("publish", [])
    if not isinstance(sub, str) or not 1 <= len(sub) <= 200:
        raise TokenError("invalid token: sub must be a string of 1-200 characters")
    for name, patterns in (("groups", groups), ("publish", publish)):
        if not isinstance(patterns, list) or not all(is_group_pattern(p) for p in patterns):
            raise TokenError(f"invalid token: {name} must be a list of group names or prefixes ending in *")
    info = payload.get("info")
    if info is not None and not info_valid(info):
        raise TokenError("invalid token: info must be a JSON object of at most 1 kB")
    return Claims(sub, group_patterns(groups), group_patterns(publish), info, float(exp))
