"""The demo page and the JavaScript client it uses."""

from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.http import Http404, HttpResponse
from django.shortcuts import render

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
