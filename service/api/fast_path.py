"""POST /api/v1/publish and /api/v1/batch answered before Django's machinery; everything
else goes to Django.

Measured per publish (docs/performance.md, "The cost of one HTTP publish"), Django's
handler, middleware, URL resolver, signals and response objects cost more CPU than the
publish itself, and under ASGI each sync middleware is a hop to a thread. This ASGI
application answers exactly those two on the event loop with their views' own checks
and answers (`views.publish_answer`, `views.batch_answer`: API key, body checks, publish,
error answers, metrics) on Django's own request class, and does to its answer what Django
and settings.MIDDLEWARE would: the request id (service/logs.py), the JSON newline,
SecurityMiddleware's headers, the Content-Length, a JSON 500 for an unexpected error,
Django's log line for an answer of 400 or more. tests/test_fast_path.py sends the same
requests both ways and compares every byte.
"""

import io
import json
import logging
from http.client import responses

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware

from service.api import views
from service.api.errors import ApiError
from service.api.errors import log as error_log
from service.logs import REQUEST_ID_HEADER, request_id, request_id_of

# path -> the view's (status, body, headers), for a POST
ROUTES = {"/api/v1/publish": views.publish_answer, "/api/v1/batch": views.batch_answer}
# Django's handler logs every answer of 400 or more here (django.utils.log.log_response).
request_log = logging.getLogger("django.request")


def security_headers_vary():
    """True when SecurityMiddleware's answer depends on the request (HSTS is sent on
    secure requests only, an http request may be redirected): then the headers taken
    once below would not be the middleware's, and every request goes to Django."""
    return bool(settings.SECURE_HSTS_SECONDS or settings.SECURE_SSL_REDIRECT)


def security_headers():
    """The headers SecurityMiddleware adds to an answer, with this process's settings."""
    response = HttpResponse()
    SecurityMiddleware(lambda request: response).process_response(HttpRequest(), response)
    return [(name.encode("latin-1"), value.encode("latin-1"))
            for name, value in response.items() if name != "Content-Type"]


async def read_body(receive, limit):
    """The request's body, at most `limit` bytes of it (the rest is left unread: the
    answer is a 413 then), or None when the client went away first."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit or not message.get("more_body", False):
            return b"".join(chunks)


class PublishFastPath:
    """The http role's ASGI application: Django's, with the publishes (ROUTES) taken first."""

    def __init__(self, django_application):
        self.django = django_application
        self.security_headers = security_headers()
        self.routes = {} if security_headers_vary() else ROUTES

    async def __call__(self, scope, receive, send):
        # Django resolves the path after root_path too, and only these exact paths are the
        # publish views.
        answer = self.routes.get(scope["path"]) if scope["type"] == "http" else None
        if answer is None or scope["method"] != "POST" or scope.get("root_path"):
            return await self.django(scope, receive, send)
        body = await read_body(receive, settings.GROUPCAST_MAX_BODY_BYTES + 1)
        if body is None:
            return
        request = ASGIRequest(scope, io.BytesIO(body))
        rid = request_id_of(request.META.get("HTTP_X_REQUEST_ID"))
        request_id.set(rid)
        try:
            status, body, headers = await answer(request)
        except Exception:
            error_log.exception("unhandled error in %s", request.path)  # as JsonErrorMiddleware
            error = ApiError(500, "internal", "internal server error")
            status, body, headers = error.status, error.body, error.headers
        if status >= 400:
            request_log.log(
                logging.ERROR if status >= 500 else logging.WARNING, "%s: %s",
                responses.get(status, "Unknown Status Code"), request.path,
                extra={"status_code": status, "request": request},
            )
        content = json.dumps(body).encode() + b"\n"
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"Content-Type", b"application/json"),
            *((name.encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()),
            *self.security_headers,
            (b"Content-Length", str(len(content)).encode()),
            (REQUEST_ID_HEADER.encode(), rid.encode()),
        ]})
        await send({"type": "http.response.body", "body": content})
        request_id.set(None)
