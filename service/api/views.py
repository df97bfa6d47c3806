"""HTTP API views: parse, call a service function, answer. See README, "HTTP API"."""

import functools
import json
import time
from pathlib import Path

from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from service import metrics
from service.api import requests
from service.api.errors import ApiError
from service.api.api_keys import api_key_valid
from service.groups import GROUP_RULE, is_group_name
from service.storage.history import history_last_offset
from service.storage.jobs import QueueFull, job_create, job_get
from service.storage.clients import REDIS_FAILURES
from service.storage.control import control_request
from service.storage.presence import group_subscribers, members_page_sync
from service.storage.publishing import NotReplicated, publish_message
from service.tokens import token_issue

RETRY_AFTER_SECONDS = "2"
# A full job queue drains at the pace of the workers, not of a Redis blip: come back later.
QUEUE_FULL_RETRY_AFTER_SECONDS = "10"


def endpoint(view_name, method):
    """A Django view of the API: answer() (API key, method, errors, metrics) as a JsonResponse.

    The view's `answer` attribute is the same call without Django's response object, for
    the publish fast path (service/api/fast_path.py)."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            status, body, headers = answer(view_name, method, view, request, *args, **kwargs)
            response = JsonResponse(body, status=status)
            for name, value in headers.items():
                response[name] = value
            return response

        wrapper.answer = functools.partial(answer, view_name, method, view)
        return csrf_exempt(wrapper)

    return decorate


def answer(view_name, method, view, request, *args, **kwargs):
    """(status, body, headers) of one API request: API key, method, error format, Redis
    outages (503 + Retry-After) and request counts around `view`."""
    try:
        if request.method != method:
            raise ApiError(405, "method_not_allowed", f"use {method}", {"Allow": method})
        if not api_key_valid(_bearer(request)):
            raise ApiError(
                401, "unauthorized", "missing or invalid API key",
                {"WWW-Authenticate": 'Bearer realm="groupcast"'},
            )
        status, body = view(request, *args, **kwargs)
        headers = {}
        metrics.redis_ok("http")
    except ApiError as error:
        status, body, headers = error.status, error.body, error.headers
    except REDIS_FAILURES:
        metrics.redis_failed("http")
        error = ApiError(
            503, "unavailable", "Redis is unreachable; nothing was stored, retry later",
            {"Retry-After": RETRY_AFTER_SECONDS},
        )
        status, body, headers = error.status, error.body, error.headers
    metrics.HTTP_REQUESTS.labels(view_name, str(status)).inc()
    return status, body, headers


OPENAPI = Path(__file__).resolve().parent / "openapi.json"


@functools.lru_cache(maxsize=1)
def _openapi_document():
    return OPENAPI.read_bytes()


def openapi(request):
    """The OpenAPI description of this API (public: it holds no secrets)."""
    return HttpResponse(_openapi_document(), content_type="application/json")


def _bearer(request):
    # META rather than request.headers: the same value, without building every header's
    # name for each request (a publish's hot path)
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


@endpoint("publish", "POST")
def publish(request):
    try:
        group, data = requests.publish_request(requests.json_body(request))
        once_key = requests.idempotency_key(request)
    except ApiError as error:
        metrics.PUBLISH_ERRORS.labels(error.code).inc()
        raise
    try:
        # The key is scoped to the group: reusing it for another group is another publish.
        offset = publish_message(
            group=group, data=data, once_key=once_key and f"api:{group}:{once_key}"
        )
    except NotReplicated as error:
        metrics.PUBLISH_ERRORS.labels("not_replicated").inc()
        raise ApiError(
            503, "not_replicated",
            f"{error}; not acknowledged, retry (with the same Idempotency-Key to avoid a duplicate)",
            {"Retry-After": RETRY_AFTER_SECONDS},
        ) from None
    except REDIS_FAILURES:
        metrics.PUBLISH_ERRORS.labels("unavailable").inc()
        raise
    return 200, {"group": group, "offset": offset}


@endpoint("tokens", "POST")
def tokens(request):
    sub, groups, ttl, publish, info = requests.token_request(requests.json_body(request))
    token = token_issue(sub=sub, groups=groups, ttl=ttl, publish=publish, info=info)
    return 200, {"token": token, "expires_in": ttl}


@endpoint("jobs", "POST")
def jobs(request):
    try:
        groups, data, run_at, rate = requests.job_request(requests.json_body(request), time.time())
        job_id = job_create(groups=groups, data=data, run_at=run_at, rate=rate)
    except ApiError as error:
        metrics.JOBS_REFUSED.labels(error.reason).inc()
        raise
    except QueueFull as error:
        metrics.JOBS_REFUSED.labels("queue_full").inc()
        raise ApiError(
            503, "queue_full", f"{error}; nothing was recorded, retry later",
            {"Retry-After": QUEUE_FULL_RETRY_AFTER_SECONDS},
        ) from None
    return 202, {"job": job_id, "status": "queued"}


@endpoint("job", "GET")
def job(request, job_id):
    status = job_get(job_id)
    if status is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    return 200, status


@endpoint("presence", "GET")
def presence(request, name):
    """The group's present members across every socket pod, a page at a time."""
    if not is_group_name(name):
        raise requests.bad_request(f"group must be {GROUP_RULE}", "bad_group")
    cursor = request.GET.get("cursor", "0")
    limit = request.GET.get("limit", "100")
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 20 and int(cursor) < 2**64):
        raise requests.bad_request("cursor must be one a previous page returned")
    if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= 1000):
        raise requests.bad_request("limit must be a whole number from 1 to 1000")
    limit = int(limit)
    members, count, next_cursor = members_page_sync(group=name, cursor=cursor, count=limit)
    return 200, {
        "group": name,
        "members": [
            {"sub": m["sub"], "info": json.loads(m["info"]), "connections": m["connections"]}
            for m in members
        ],
        "member_count": count,
        "cursor": next_cursor,
    }


@endpoint("disconnect", "POST")
def disconnect(request):
    """Close every connection of a sub, on every socket pod, with 4009."""
    sub = requests.sub_field(requests.json_body(request))
    return 200, {"disconnected": control_request(op="disconnect", sub=sub)}


@endpoint("unsubscribe", "POST")
def unsubscribe(request):
    """Take a sub's connections out of a group, on every socket pod."""
    sub, group = requests.unsubscribe_request(requests.json_body(request))
    return 200, {"unsubscribed": control_request(op="unsubscribe", sub=sub, group=group)}


@endpoint("group", "GET")
def group(request, name):
    if not is_group_name(name):
        raise requests.bad_request(f"group must be {GROUP_RULE}", "bad_group")
    return 200, {
        "group": name,
        "subscribers": group_subscribers(group=name),
        "last_offset": history_last_offset(group=name),
    }
