"""HTTP API views: parse, call a service function, answer. See README, "HTTP API"."""

import contextlib
import functools
import json
import logging
import time
from pathlib import Path

import redis
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
from service.storage.publishing import (
    NotReplicated, apublish_many, apublish_message, encode_data, publish_message,
)
from service.tokens import token_issue

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "2"
# A full job queue drains at the pace of the workers, not of a Redis blip: come back later.
QUEUE_FULL_RETRY_AFTER_SECONDS = "10"


def endpoint(view_name, method):
    """A Django view of the API: answer() (API key, method, errors, metrics) as a JsonResponse."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            return _response(*answer(view_name, method, view, request, *args, **kwargs))

        return csrf_exempt(wrapper)

    return decorate


def async_endpoint(view_name, method):
    """endpoint() for an async view (Django runs it on its event loop under ASGI)."""

    def decorate(view):
        @functools.wraps(view)
        async def wrapper(request):
            return _response(*await answer_async(view_name, method, view, request))

        return csrf_exempt(wrapper)

    return decorate


def _response(status, body, headers):
    response = JsonResponse(body, status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def answer(view_name, method, view, request, *args, **kwargs):
    """(status, body, headers) of one API request: API key, method, error format, Redis
    outages (503 + Retry-After) and request counts around `view`."""
    try:
        _admit(method, request)
        status, body = view(request, *args, **kwargs)
        headers = _succeeded()
    except (ApiError, *REDIS_FAILURES) as failure:
        status, body, headers = _refused(view_name, failure)
    metrics.labelled(metrics.HTTP_REQUESTS, view_name, str(status)).inc()
    return status, body, headers


async def answer_async(view_name, method, view, request):
    """answer() around an async `view` (the publish fast path, service/api/fast_path.py)."""
    try:
        _admit(method, request)
        status, body = await view(request)
        headers = _succeeded()
    except (ApiError, *REDIS_FAILURES) as failure:
        status, body, headers = _refused(view_name, failure)
    metrics.labelled(metrics.HTTP_REQUESTS, view_name, str(status)).inc()
    return status, body, headers


def _admit(method, request):
    if request.method != method:
        raise ApiError(405, "method_not_allowed", f"use {method}", {"Allow": method})
    if not api_key_valid(_bearer(request)):
        raise ApiError(
            401, "unauthorized", "missing or invalid API key",
            {"WWW-Authenticate": 'Bearer realm="groupcast"'},
        )


def _succeeded():
    metrics.redis_ok("http")
    return {}


def _refused(view_name, failure):
    """(status, body, headers) for an ApiError or a Redis failure."""
    if isinstance(failure, ApiError):
        return failure.status, failure.body, failure.headers
    metrics.redis_failed("http")
    # what failed, for whoever reads the 503s in the log (the answer only says "retry later")
    log.warning("%s: Redis failed (%s: %s)", view_name, type(failure).__name__, failure)
    error = _unavailable(failure)
    return error.status, error.body, error.headers


def _unavailable(failure):
    """The 503 for a Redis failure."""
    if isinstance(failure, (TimeoutError, redis.TimeoutError)):
        # Sent but not answered in time: Redis may have run it after all.
        message = "Redis did not answer in time; it may have been stored: retry with the same Idempotency-Key"
    else:
        message = "Redis is unreachable; nothing was stored, retry later"
    return ApiError(503, "unavailable", message, {"Retry-After": RETRY_AFTER_SECONDS})


def _not_replicated(error):
    """The 503 for a publish stored on the master but not on enough replicas in time."""
    return ApiError(
        503, "not_replicated",
        f"{error}; not acknowledged, retry (with the same Idempotency-Key to avoid a duplicate)",
        {"Retry-After": RETRY_AFTER_SECONDS},
    )


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
    group, data, once_key = _publish_request(request)
    with _publish_failures():
        offset = publish_message(group=group, data=data, once_key=once_key)
    return 200, {"group": group, "offset": offset}


async def publish_async(request):
    """publish() for the fast path: the same checks and answers, published from the event
    loop (so concurrent publishes share a Redis round trip: PublishBatch)."""
    group, data, once_key = _publish_request(request)
    with _publish_failures():
        offset = await apublish_message(group=group, data=data, once_key=once_key)
    return 200, {"group": group, "offset": offset}


def publish_answer(request):
    """(status, body, headers) of POST /api/v1/publish, for the fast path."""
    return answer_async("publish", "POST", publish_async, request)


def _publish_request(request):
    """(group, data, idempotency key) of a publish request, or its 4xx (counted)."""
    with _refusals_counted():
        group, data = requests.publish_request(requests.json_body(request))
        once_key = requests.idempotency_key(request)
    return group, data, _scoped(group, once_key)


def _scoped(group, once_key):
    # The key is scoped to the group: reusing it for another group is another publish.
    return once_key and f"api:{group}:{once_key}"


@contextlib.contextmanager
def _refusals_counted():
    """An ApiError raised inside counted as a refused publish."""
    try:
        yield
    except ApiError as error:
        metrics.PUBLISH_ERRORS.labels(error.code).inc()
        raise


@contextlib.contextmanager
def _publish_failures():
    """Count a publish Redis refused; one not replicated in time is a 503 saying so."""
    try:
        yield
    except NotReplicated as error:
        raise _publish_refusal(error) from None
    except REDIS_FAILURES as failure:
        _publish_refusal(failure)  # counted; answered by answer()
        raise


def _publish_refusal(failure):
    """The error answered for a publish Redis failed, counted."""
    if isinstance(failure, NotReplicated):
        metrics.PUBLISH_ERRORS.labels("not_replicated").inc()
        return _not_replicated(failure)
    if isinstance(failure, REDIS_FAILURES):
        metrics.PUBLISH_ERRORS.labels("unavailable").inc()
        return _unavailable(failure)
    raise failure  # not Redis's: a bug, answered 500


async def batch_async(request):
    """POST /api/v1/batch: many messages in one request, each stored or refused on its own
    and answered in the request's order (README, "HTTP API"); their scripts share one
    Redis pipeline. When Redis failed every one, the answer is the 503 one publish gets."""
    with _refusals_counted():
        messages = requests.batch_messages(requests.json_body(request))
    results, publishing = [], []  # publishing: (its index in results, (group, data JSON, key))
    for message in messages:
        try:
            with _refusals_counted():
                group, data, once_key = requests.batch_message(message)
        except ApiError as error:
            results.append(error.body)
            continue
        publishing.append((len(results), (group, encode_data(data), _scoped(group, once_key))))
        results.append({"group": group})
    outcomes = await apublish_many([message for _, message in publishing])
    failures = []
    for (index, _), outcome in zip(publishing, outcomes):
        if isinstance(outcome, BaseException):
            failures.append((outcome, _publish_refusal(outcome)))
            results[index] = failures[-1][1].body
        else:
            results[index]["offset"] = outcome
    unreachable = [failure for failure, error in failures if error.code == "unavailable"]
    if unreachable:
        metrics.redis_failed("http")
        log.warning("batch: Redis failed %d of %d publishes (%s: %s)", len(unreachable),
                    len(outcomes), type(unreachable[0]).__name__, unreachable[0])
    if failures and len(failures) == len(outcomes):
        raise failures[0][1]
    return 200, {"results": results}


batch = async_endpoint("batch", "POST")(batch_async)


def batch_answer(request):
    """(status, body, headers) of POST /api/v1/batch, for the fast path."""
    return answer_async("batch", "POST", batch_async, request)


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
