"""API errors: every failure is `{"error": {"code", "message"}}` with a fitting status."""

import logging

from django.http import JsonResponse

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status, code, message, headers=None, reason=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        # what a refusal metric counts it as (finer than the code the client sees)
        self.reason = reason or code

    @property
    def body(self):
        return {"error": {"code": self.code, "message": self.message}}

    def response(self):
        response = JsonResponse(self.body, status=self.status)
        for name, value in self.headers.items():
            response[name] = value
        return response


def bad_request(message, code="bad_request"):
    return ApiError(400, code, message)


class JsonErrorMiddleware:
    """Answers Django's own 404s and unexpected 500s in the API's error format too."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code == 404 and not response.get("Content-Type", "").startswith(
            "application/json"
        ):
            return ApiError(404, "not_found", f"no such endpoint: {request.path}").response()
        return response

    def process_exception(self, request, exception):
        log.exception("unhandled error in %s", request.path)
        return ApiError(500, "internal", "internal server error").response()
