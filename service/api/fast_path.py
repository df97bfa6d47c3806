"""POST /api/v1/publish answered before Django's machinery; everything else goes to Django.

Measured per publish (docs/performance.md, "The cost of one HTTP publish"), Django's
handler, middleware, URL resolver, signals and response objects cost more CPU than the
publish itself. This WSGI application answers exactly `POST /api/v1/publish` with the
same view (`views.publish.answer`: API key, body checks, publish_message, error answers,
metrics) and does to its answer what Django and settings.MIDDLEWARE would: the request id
(service/logs.py), the JSON newline, SecurityMiddleware's headers, the Content-Length, a
JSON 500 for an unexpected error, Django's log line for an answer of 400 or more.
tests/test_fast_path.py sends the same requests both ways and compares every byte.
"""

import json
import logging
from http.client import responses

from django.conf import settings
from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware

from service.api import views
from service.api.errors import ApiError
from service.api.errors import log as error_log
from service.logs import REQUEST_ID_HEADER, request_id, request_id_of

PATH = "/api/v1/publish"
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
    return [(name, value) for name, value in response.items() if name != "Content-Type"]


class Answer(list):
    """An answer's body; closing it ends the request, as Django's request_finished does."""

    def close(self):
        request_id.set(None)


class PublishFastPath:
    """The http role's WSGI application: Django's, with POST /api/v1/publish taken first."""

    def __init__(self, django_application):
        self.django = django_application
        self.security_headers = security_headers()
        self.path = None if security_headers_vary() else PATH

    def __call__(self, environ, start_response):
        # Django resolves PATH_INFO too, and only this exact path is the publish view.
        if environ.get("PATH_INFO") != self.path or environ.get("REQUEST_METHOD") != "POST":
            return self.django(environ, start_response)
        rid = request_id_of(environ.get("HTTP_X_REQUEST_ID"))
        request_id.set(rid)
        request = WSGIRequest(environ)
        try:
            status, body, headers = views.publish.answer(request)
        except Exception:
            error_log.exception("unhandled error in %s", request.path)  # as JsonErrorMiddleware
            error = ApiError(500, "internal", "internal server error")
            status, body, headers = error.status, error.body, error.headers
        reason = responses.get(status, "Unknown Status Code")
        if status >= 400:
            request_log.log(
                logging.ERROR if status >= 500 else logging.WARNING, "%s: %s", reason, request.path,
                extra={"status_code": status, "request": request},
            )
        content = json.dumps(body).encode() + b"\n"
        start_response(f"{status} {reason}", [
            ("Content-Type", "application/json"),
            *headers.items(),
            *self.security_headers,
            ("Content-Length", str(len(content))),
            (REQUEST_ID_HEADER, rid),
        ])
        return Answer([content])
