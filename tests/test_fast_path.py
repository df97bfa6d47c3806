"""The publish fast path (service/api/fast_path.py) answers exactly as Django does.

Each request is sent to the http role's WSGI application (service.wsgi.application, the
fast path in front of Django) and to Django's own WSGI handler behind it, and the two
answers are compared: status line, every header in order (the request id's value apart
when the server made it up), the body byte for byte, Django's log line, the request
metrics, and the request id being forgotten once the answer is closed. Against the real
Redis of the test run.
"""

import io
import json
import logging
import sys

import pytest
from django.core.signals import request_started
from prometheus_client import REGISTRY

from service import metrics
from service.api import views
from service.logs import REQUEST_ID, REQUEST_ID_HEADER, request_id
from service.storage import keys

PUBLISH = "/api/v1/publish"
KEY = "test-key-0123456789abcdef"
# the series either path counts (the request count by status, refusals by reason)
COUNTED = ("groupcast_http_requests_total", "groupcast_publish_errors_total")


@pytest.fixture(scope="module")
def apps():
    import service.wsgi

    return {"fast": service.wsgi.application, "django": service.wsgi.django_application}


def environ(body=b"", *, method="POST", path=PUBLISH, content_type="application/json",
            key=KEY, chunked=False, length=None, **headers):
    """A WSGI environ as gunicorn builds it; `headers` as HTTP_ names (HTTP_IDEMPOTENCY_KEY)."""
    env = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1:8000",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if content_type is not None:
        env["CONTENT_TYPE"] = content_type
    if chunked:  # gunicorn decodes a chunked body and says it may be read to its end
        env["wsgi.input_terminated"] = True
    else:
        env["CONTENT_LENGTH"] = str(len(body)) if length is None else length
    if key is not None:
        env["HTTP_AUTHORIZATION"] = key if " " in key else f"Bearer {key}"
    env.update(headers)
    return env


class Seen(logging.Handler):
    """django.request's records, with the request id they were logged under."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.lines = []

    def emit(self, record):
        self.lines.append((record.levelname, record.getMessage(), record.status_code,
                           record.request.path, request_id.get()))


def counted():
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in REGISTRY.collect() for sample in family.samples
            if sample.name in COUNTED}


def call(app, env):
    """One request through a WSGI app, as a WSGI server does it, with what it logged,
    counted and signalled."""
    answered, seen, started = {}, Seen(), []

    def start_response(status, headers, exc_info=None):
        answered.update(status=status, headers=headers)

    def on_started(**kwargs):
        started.append(True)

    logger = logging.getLogger("django.request")
    logger.addHandler(seen)
    request_started.connect(on_started)
    before = counted()
    try:
        result = app(env, start_response)
        try:
            body = b"".join(result)
        finally:
            result.close()
    finally:
        logger.removeHandler(seen)
        request_started.disconnect(on_started)
    after = counted()
    changes = {name: after[name] - before.get(name, 0) for name in after
               if after[name] != before.get(name, 0)}
    return {"status": answered["status"], "headers": answered["headers"], "body": body,
            "log": seen.lines, "counted": changes, "django_handler": bool(started),
            "request_id_after": request_id.get()}


def same_answer(apps, make_env, *, offsets_differ=False):
    """Both answers to the same request, checked equal; the fast path's answer."""
    fast, django = (call(apps[name], make_env()) for name in ("fast", "django"))
    assert not fast["django_handler"] and django["django_handler"]
    for answer in (fast, django):
        assert answer["request_id_after"] is None
        rid = dict(answer["headers"])[REQUEST_ID_HEADER]
        # the id every log line of the request carried is the one answered
        assert all(line[-1] == rid for line in answer["log"])
        if offsets_differ:  # two publishes without an Idempotency-Key: two offsets
            body = json.loads(answer["body"])
            assert answer["body"].endswith(b"\n") and body.pop("offset")
            answer["body"] = json.dumps(body).encode()
    sent = make_env().get("HTTP_X_REQUEST_ID")
    if not (sent and REQUEST_ID.fullmatch(sent)):
        for answer in (fast, django):  # made up by the server: a new value each time
            answer["headers"] = [(n, "<id>" if n == REQUEST_ID_HEADER else v) for n, v in answer["headers"]]
            answer["log"] = [line[:-1] for line in answer["log"]]
    for part in ("status", "headers", "body", "log", "counted"):
        assert fast[part] == django[part], part
    status = fast["status"].split()[0]
    if status != "500":  # an unexpected error escapes the view's accounting, both ways
        assert fast["counted"][("groupcast_http_requests_total", (("status", status), ("view", "publish")))] == 1
    return fast


def publish(group="news", data=None, **kwargs):
    body = json.dumps({"group": group, "data": {"text": "hi"} if data is None else data}).encode()
    return lambda: environ(body, **kwargs)


def test_a_publish_is_answered_by_the_fast_path_as_by_django(apps, sync_redis):
    answer = same_answer(apps, publish(), offsets_differ=True)
    assert answer["status"] == "200 OK" and json.loads(answer["body"]) == {"group": "news"}
    assert sync_redis.xlen(keys.stream("news")) == 2


def test_a_repeated_idempotency_key_gets_the_same_bytes_either_way(apps, sync_redis):
    answer = same_answer(apps, publish(HTTP_IDEMPOTENCY_KEY="req-42"))
    assert answer["status"] == "200 OK"
    [(offset, _)] = sync_redis.xrange(keys.stream("news"))
    assert json.loads(answer["body"]) == {"group": "news", "offset": offset.decode()}
    # a stated length: gunicorn writes no chunked framing
    assert dict(answer["headers"])["Content-Length"] == str(len(answer["body"]))


@pytest.mark.parametrize("rid", ["trace-1.a:b", "x" * 129, "bad id"])
def test_a_client_request_id_is_kept_or_replaced_alike(apps, rid):
    answer = same_answer(apps, publish(HTTP_X_REQUEST_ID=rid, key="wrong-key-0123456789"))
    kept = dict(answer["headers"])[REQUEST_ID_HEADER]
    assert (kept == rid) == (rid == "trace-1.a:b")


def test_a_chunked_body_is_read_alike(apps):
    same_answer(apps, publish(chunked=True), offsets_differ=True)


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'{"group": "news"}', b'{"group": "bad group", "data": 1}',
     b'{"group": "' + b"x" * 101 + b'", "data": 1}', b'{"group": 5, "data": 1}', b'{"data": 1}',
     b"\xff\xfe", b'{"group": "news", "data": NaN}', b'{"group": "news", "data": 1e999}',
     b'{"group": "news", "data": "\\ud800"}', b"[" * 50000, b""],
)
def test_bad_bodies_are_answered_alike_and_store_nothing(apps, sync_redis, raw):
    answer = same_answer(apps, lambda: environ(raw))
    assert answer["status"] == "400 Bad Request"
    assert answer["log"][0][:3] == ("WARNING", f"Bad Request: {PUBLISH}", 400)
    assert sync_redis.keys(keys.stream("*")) == []


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789", "Basic abc", "Bearer "])
def test_a_missing_or_wrong_api_key_is_answered_alike(apps, key):
    answer = same_answer(apps, publish(key=key))
    assert answer["status"] == "401 Unauthorized"
    assert dict(answer["headers"])["WWW-Authenticate"] == 'Bearer realm="groupcast"'


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json; charset=latin-1"])
def test_a_body_not_sent_as_json_is_answered_alike(apps, content_type):
    answer = same_answer(apps, publish(content_type=content_type))
    assert answer["status"] == "415 Unsupported Media Type"


@pytest.mark.parametrize("length", [None, "5000", "12ab"])
def test_an_oversized_body_or_a_bad_length_is_answered_alike(apps, settings, length):
    settings.GROUPCAST_MAX_BODY_BYTES = 1000
    answer = same_answer(apps, publish(data="x" * 2000, length=length))
    assert answer["status"] == ("400 Bad Request" if length == "12ab" else "413 Request Entity Too Large")


@pytest.mark.parametrize("once_key", ["caf\u00e9", "", "k" * 201])
def test_a_bad_idempotency_key_is_answered_alike(apps, once_key):
    assert same_answer(apps, publish(HTTP_IDEMPOTENCY_KEY=once_key))["status"] == "400 Bad Request"


def test_redis_unreachable_is_answered_alike(apps, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # the clients follow the setting
    answer = same_answer(apps, publish())
    assert answer["status"] == "503 Service Unavailable"
    assert dict(answer["headers"])["Retry-After"] == "2"
    assert answer["log"][0][0] == "ERROR"


def test_a_publish_not_replicated_is_answered_alike(apps, settings):
    settings.GROUPCAST_REDIS_MIN_REPLICAS = 1  # the test Redis has no replica
    settings.GROUPCAST_REDIS_REPLICA_TIMEOUT_MS = 50
    answer = same_answer(apps, publish(HTTP_IDEMPOTENCY_KEY="r1"))
    assert json.loads(answer["body"])["error"]["code"] == "not_replicated"


def test_an_unexpected_error_is_a_json_500_logged_alike(apps, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(views, "publish_message", broken)
    with caplog.at_level(logging.ERROR, logger="service.api.errors"):
        answer = same_answer(apps, publish())
    assert answer["status"] == "500 Internal Server Error"
    assert json.loads(answer["body"]) == {"error": {"code": "internal", "message": "internal server error"}}
    unhandled = [r for r in caplog.records if r.name == "service.api.errors"]
    assert [r.getMessage() for r in unhandled] == [f"unhandled error in {PUBLISH}"] * 2
    assert all(r.exc_info[0] is RuntimeError for r in unhandled)


@pytest.mark.parametrize("method, path", [("GET", PUBLISH), ("PUT", PUBLISH), ("POST", PUBLISH + "/"),
                                          ("POST", "/api/v1/tokens"), ("GET", "/healthz")])
def test_anything_else_is_django_s(apps, method, path):
    fast = call(apps["fast"], environ(b"{}", method=method, path=path))
    assert fast["django_handler"]
    django = call(apps["django"], environ(b"{}", method=method, path=path))
    assert fast["status"] == django["status"]


@pytest.mark.parametrize("setting, value", [("SECURE_HSTS_SECONDS", 3600), ("SECURE_SSL_REDIRECT", True)])
def test_security_headers_that_depend_on_the_request_leave_publishes_to_django(apps, settings, setting, value):
    from service.api.fast_path import PublishFastPath

    setattr(settings, setting, value)
    assert call(PublishFastPath(apps["django"]), publish()())["django_handler"]

