"""The demo page, the JavaScript client it uses, and the token the page connects with."""

from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpResponse
from django.shortcuts import render

from service.api import requests
from service.api.views import endpoint
from service.tokens import token_issue

# service/static, beside the templates of the Django app
STATIC = Path(__file__).resolve().parent.parent / "static"
SCRIPTS = {"groupcast.js", "demo.js"}


def index(request):
    return render(request, "groupcast/index.html", {"ws_url": settings.GROUPCAST_WS_URL})


@lru_cache(maxsize=None)
def _script(name):
    return (STATIC / name).read_bytes()


def script(request, name):
    """Serve the two scripts from memory (no static-files server needed for them)."""
    if name not in SCRIPTS:
        raise Http404(name)
    response = HttpResponse(_script(name), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300"
    return response


# A display name, shown to the group's other members (the token's info); the demo user's
# sub is derived from it, so two tabs with one name are one member with two connections.
NAME_MAX = 60
SUB_PREFIX = "demo-"


@endpoint("demo_token", "POST")
def token(request):
    """A client token for the demo page, minted here where the JWT secret is: the page
    says who it is and which group it wants; what the token allows is decided here. It
    may read, publish to and be present in that one group, as `name` (sub "demo-<name>",
    info {"name": name}). Behind the API key like the rest of the API, since whoever
    holds such a token may publish.

    Body {"name", "group", "ttl"?}; answers {"token", "expires_in"}, as POST /api/v1/tokens.
    """
    body = requests.json_body(request)
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= NAME_MAX:
        raise requests.bad_request(f'"name" must be a string of 1-{NAME_MAX} characters')
    name = name.strip()
    group = requests.group_field(body)
    # The API's own checks (ttl within GROUPCAST_TOKEN_MAX_TTL, info size), on the claims
    # the demo grants.
    sub, groups, ttl, publish, info = requests.token_request({
        "sub": SUB_PREFIX + name, "groups": [group], "publish": [group], "info": {"name": name},
        "ttl": body.get("ttl", 3600),
    })
    token = token_issue(sub=sub, groups=groups, ttl=ttl, publish=publish, info=info)
    return 200, {"token": token, "expires_in": ttl}
