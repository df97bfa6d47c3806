"""Client tokens: HS256 JWTs naming the subject and the groups it may subscribe to."""

import time
from dataclasses import dataclass

import jwt
from django.conf import settings

from service.groups import is_group_name

ALGORITHM = "HS256"


class TokenError(Exception):
    """A token that does not authenticate a client; the message says why."""


@dataclass(frozen=True, slots=True)
class Claims:
    sub: str
    groups: frozenset


def token_issue(*, sub, groups, ttl, now=None):
    """Sign a token for `sub` allowed into `groups` for `ttl` seconds."""
    issued = int(now if now is not None else time.time())
    payload = {"sub": sub, "groups": list(groups), "iat": issued, "nbf": issued, "exp": issued + ttl}
    return jwt.encode(payload, settings.GROUPCAST_JWT_SECRETS[0], algorithm=ALGORITHM)


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
            payload = jwt.decode(
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
    sub, groups = payload["sub"], payload.get("groups", [])
    if not isinstance(sub, str) or not 1 <= len(sub) <= 200 or not isinstance(groups, list):
        raise TokenError("invalid token: sub must be a string of 1-200 characters and groups a list")
    if not all(is_group_name(group) for group in groups):
        raise TokenError("invalid token: groups must be valid group names")
    return Claims(payload["sub"], frozenset(groups))
