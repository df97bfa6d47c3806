"""The publish fast path (service/api/fast_path.py) answers exactly as Django does, for a
publish and for a batch.

Each request is sent to the http role's ASGI application (service.api.app.application, the
fast path in front of Django) and to Django's own ASGI handler behind it, and the two
answers are compared: status, every header in order (the request id's value apart when the
server made it up), the body byte for byte, Django's log line, the request metrics, and the
request id being forgotten once answered. Against the real Redis of the test run.
"""

import asyncio
import json
import logging

import pytest
from django.core.signals import request_started
from prometheus_client import REGISTRY

from service.api import views
from service.logs import REQUEST_ID, REQUEST_ID_HEADER, request_id
from service.storage import keys, publishing

PUBLISH = "/api/v1/publish"
BATCH = "/api/v1/batch"
KEY = "test-key-0123456789abcdef"
# the series either path counts (the request count by status, refusals by reason)
COUNTED = ("groupcast_http_requests_total", "groupcast_publish_errors_total")


def request(body=b"", *, method="POST", path=PUBLISH, content_type="application/json",
            key=KEY, parts=1, length=None, **headers):
    """(ASGI scope, body messages) as uvicorn makes them; `headers` as HTTP_ names
    (HTTP_IDEMPOTENCY_KEY); `parts` > 1 sends the body in that many messages without a
    Content-Length, as a chunked request arrives."""
    sent = [(b"host", b"127.0.0.1:8000")]
    if content_type is not None:
        sent.append((b"content-type", content_type.encode()))
    if parts == 1:
        sent.append((b"content-length", (str(len(body)) if length is None else length).encode()))
    if key is not None:
        sent.append((b"authorization", (key if " " in key else f"Bearer {key}").encode()))
    for name, value in headers.items():
        sent.append((name.removeprefix("HTTP_").replace("_", "-").lower().encode(), value.encode("latin-1")))
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": b"", "root_path": "", "headers": sent,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080),
    }
    size = -(-len(body) // parts) or 1
    pieces = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
                for i, piece in enumerate(pieces)]
    return scope, messages


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


async def call(app, made):
    """One request through an ASGI app, as uvicorn does it, with what it logged, counted
    and signalled."""
    scope, messages = made
    incoming, sent, seen, started = list(messages), [], Seen(), []

    async def receive():
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()  # the client stays until answered (the app is awaited)

    async def send(message):
        sent.append(message)

    def on_started(**kwargs):
        started.append(True)

    logger = logging.getLogger("django.request")
    logger.addHandler(seen)
    request_started.connect(on_started)
    before = counted()
    try:
        await app(scope, receive, send)
    finally:
        logger.removeHandler(seen)
        request_started.disconnect(on_started)
    after = counted()
    changes = {name: after[name] - before.get(name, 0) for name in after
               if after[name] != before.get(name, 0)}
    [start, *bodies] = sent
    assert start["type"] == "http.response.start" and not bodies[-1].get("more_body", False)
    return {"status": start["status"],
            "headers": [(n.decode("latin-1"), v.decode("latin-1")) for n, v in start["headers"]],
            "body": b"".join(message["body"] for message in bodies), "log": seen.lines,
            "counted": changes, "django_handler": bool(started), "request_id_after": request_id.get()}


async def same_answer(apps, make_request, *, offsets_differ=False):
    """Both answers to the same request, checked equal; the fast path's answer."""
    fast = await call(apps["fast"], make_request())
    django = await call(apps["django"], make_request())
    assert not fast["django_handler"] and django["django_handler"]
    for answer in (fast, django):
        assert answer["request_id_after"] is None
        rid = dict(answer["headers"])[REQUEST_ID_HEADER]
        # the id every log line of the request carried is the one answered
        assert all(line[-1] == rid for line in answer["log"])
        if offsets_differ:  # two publishes without an Idempotency-Key: two offsets
            body = json.loads(answer["body"])
            assert answer["body"].endswith(b"\n")
            for published in body.get("results", [body]):
                assert "error" in published or published.pop("offset")
            answer["body"] = json.dumps(body).encode()
    sent = dict(make_request()[0]["headers"]).get(b"x-request-id", b"").decode("latin-1")
    if not (sent and REQUEST_ID.fullmatch(sent)):
        for answer in (fast, django):  # made up by the server: a new value each time
            answer["headers"] = [(n, "<id>" if n == REQUEST_ID_HEADER else v) for n, v in answer["headers"]]
            answer["log"] = [line[:-1] for line in answer["log"]]
    for part in ("status", "headers", "body", "log", "counted"):
        assert fast[part] == django[part], part
    status, view = str(fast["status"]), make_request()[0]["path"].rsplit("/", 1)[1]
    if status != "500":  # an unexpected error escapes the view's accounting, both ways
        assert fast["counted"][("groupcast_http_requests_total", (("status", status), ("view", view)))] == 1
    return fast


def publish(group="news", data=None, **kwargs):
    body = json.dumps({"group": group, "data": {"text": "hi"} if data is None else data}).encode()
    return lambda: request(body, **kwargs)


def batch(*messages, **kwargs):
    body = json.dumps({"messages": list(messages)}).encode()
    return lambda: request(body, path=BATCH, **kwargs)


async def test_a_publish_is_answered_by_the_fast_path_as_by_django(apps, sync_redis):
    answer = await same_answer(apps, publish(), offsets_differ=True)
    assert answer["status"] == 200 and json.loads(answer["body"]) == {"group": "news"}
    assert sync_redis.xlen(keys.stream("news")) == 2


async def test_a_repeated_idempotency_key_gets_the_same_bytes_either_way(apps, sync_redis):
    answer = await same_answer(apps, publish(HTTP_IDEMPOTENCY_KEY="req-42"))
    assert answer["status"] == 200
    [(offset, _)] = sync_redis.xrange(keys.stream("news"))
    assert json.loads(answer["body"]) == {"group": "news", "offset": offset.decode()}
    # a stated length: the server writes no chunked framing
    assert dict(answer["headers"])["Content-Length"] == str(len(answer["body"]))


@pytest.mark.parametrize("rid", ["trace-1.a:b", "x" * 129, "bad id"])
async def test_a_client_request_id_is_kept_or_replaced_alike(apps, rid):
    answer = await same_answer(apps, publish(HTTP_X_REQUEST_ID=rid, key="wrong-key-0123456789"))
    kept = dict(answer["headers"])[REQUEST_ID_HEADER]
    assert (kept == rid) == (rid == "trace-1.a:b")


async def test_a_body_in_several_messages_without_a_length_is_read_alike(apps):
    await same_answer(apps, publish(parts=3), offsets_differ=True)


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1, 2]", b'{"group": "news"}', b'{"group": "bad group", "data": 1}',
     b'{"group": "' + b"x" * 101 + b'", "data": 1}', b'{"group": 5, "data": 1}', b'{"data": 1}',
     b"\xff\xfe", b'{"group": "news", "data": NaN}', b'{"group": "news", "data": 1e999}',
     b'{"group": "news", "data": "\\ud800"}', b"[" * 50000, b"",
     # a lone surrogate without a \\u escape: UTF-8's form of U+D800, and one in UTF-16
     b'{"group": "news", "data": "\xed\xa0\x80"}',
     '{"group": "news", "data": "'.encode("utf-16-le") + b"\x00\xd8" + '"}'.encode("utf-16-le")],
)
async def test_bad_bodies_are_answered_alike_and_store_nothing(apps, sync_redis, raw):
    answer = await same_answer(apps, lambda: request(raw))
    assert answer["status"] == 400
    assert answer["log"][0][:3] == ("WARNING", f"Bad Request: {PUBLISH}", 400)
    assert sync_redis.keys(keys.stream("*")) == []


@pytest.mark.parametrize("key", [None, "wrong-key-0123456789", "Basic abc", "Bearer "])
async def test_a_missing_or_wrong_api_key_is_answered_alike(apps, key):
    answer = await same_answer(apps, publish(key=key))
    assert answer["status"] == 401
    assert dict(answer["headers"])["WWW-Authenticate"] == 'Bearer realm="groupcast"'


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json; charset=latin-1"])
async def test_a_body_not_sent_as_json_is_answered_alike(apps, content_type):
    answer = await same_answer(apps, publish(content_type=content_type))
    assert answer["status"] == 415


@pytest.mark.parametrize("length", [None, "5000", "12ab"])
async def test_an_oversized_body_or_a_bad_length_is_answered_alike(apps, settings, length):
    settings.GROUPCAST_MAX_BODY_BYTES = 1000
    answer = await same_answer(apps, publish(data="x" * 2000, length=length))
    assert answer["status"] == (400 if length == "12ab" else 413)


@pytest.mark.parametrize("once_key", ["caf\u00e9", "", "k" * 201])
async def test_a_bad_idempotency_key_is_answered_alike(apps, once_key):
    assert (await same_answer(apps, publish(HTTP_IDEMPOTENCY_KEY=once_key)))["status"] == 400


async def test_redis_unreachable_is_answered_alike(apps, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # the clients follow the setting
    answer = await same_answer(apps, publish())
    assert answer["status"] == 503
    assert dict(answer["headers"])["Retry-After"] == "2"
    assert answer["log"][0][0] == "ERROR"


async def test_a_publish_not_replicated_is_answered_alike(apps, settings):
    settings.GROUPCAST_REDIS_MIN_REPLICAS = 1  # the test Redis has no replica
    settings.GROUPCAST_REDIS_REPLICA_TIMEOUT_MS = 50
    answer = await same_answer(apps, publish(HTTP_IDEMPOTENCY_KEY="r1"))
    assert json.loads(answer["body"])["error"]["code"] == "not_replicated"


async def test_an_unexpected_error_is_a_json_500_logged_alike(apps, monkeypatch, caplog):
    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(views, "publish_message", broken)
    monkeypatch.setattr(views, "apublish_message", broken)
    with caplog.at_level(logging.ERROR, logger="service.api.errors"):
        answer = await same_answer(apps, publish())
    assert answer["status"] == 500
    assert json.loads(answer["body"]) == {"error": {"code": "internal", "message": "internal server error"}}
    unhandled = [r for r in caplog.records if r.name == "service.api.errors"]
    assert [r.getMessage() for r in unhandled] == [f"unhandled error in {PUBLISH}"] * 2
    assert all(r.exc_info[0] is RuntimeError for r in unhandled)


@pytest.mark.parametrize("method, path", [("GET", PUBLISH), ("PUT", PUBLISH), ("POST", PUBLISH + "/"),
                                          ("POST", "/api/v1/tokens"), ("GET", "/healthz")])
async def test_anything_else_is_django_s(apps, method, path):
    fast = await call(apps["fast"], request(b"{}", method=method, path=path))
    assert fast["django_handler"]
    django = await call(apps["django"], request(b"{}", method=method, path=path))
    assert fast["status"] == django["status"]


@pytest.mark.parametrize("setting, value", [("SECURE_HSTS_SECONDS", 3600), ("SECURE_SSL_REDIRECT", True)])
async def test_security_headers_that_depend_on_the_request_leave_publishes_to_django(apps, settings, setting, value):
    from service.api.fast_path import PublishFastPath

    setattr(settings, setting, value)
    assert (await call(PublishFastPath(apps["django"]), publish()()))["django_handler"]



async def test_a_publish_redis_does_not_answer_is_a_503_within_the_deadline(apps, settings, monkeypatch):
    """A Redis that accepts and never answers (a lost shard, a hung node): the fast path
    answers 503 + Retry-After at its deadline, not after redis-py's socket timeouts (5 s
    per try) and retries."""
    await answered_503_by_a_silent_redis(apps, settings, monkeypatch, publish())


async def answered_503_by_a_silent_redis(apps, settings, monkeypatch, make_request):
    """The fast path's answer to a request against a Redis that accepts connections and
    never answers, checked: a 503 `unavailable` (maybe stored) within the deadline."""
    held = []

    async def silent(reader, writer):
        held.append(writer)  # read nothing, answer nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setattr(publishing, "PUBLISH_DEADLINE_SECONDS", 0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        answer = await call(apps["fast"], make_request())
    finally:
        server.close()
        for writer in held:
            writer.close()
    assert loop.time() - started < 2.0
    assert answer["status"] == 503 and dict(answer["headers"])["Retry-After"] == "2"
    error = json.loads(answer["body"])["error"]
    assert error["code"] == "unavailable" and "may have been stored" in error["message"]


# A batch: valid messages, messages refused on their own, the same key twice.
MIXED = [{"group": "news", "data": 1}, {"group": "bad group", "data": 2}, 7, {"group": "news"},
         {"group": "sport", "data": {"n": 3}, "idempotency_key": "b-1"},
         {"group": "sport", "data": 4, "idempotency_key": "\u00e9"},
         {"group": "sport", "data": 5, "idempotency_key": "b-1"}]


async def test_a_batch_is_answered_by_the_fast_path_as_by_django(apps, sync_redis):
    answer = await same_answer(apps, batch(*MIXED), offsets_differ=True)
    assert answer["status"] == 200
    results = json.loads(answer["body"])["results"]
    assert [r.get("group") or r["error"]["code"] for r in results] == [
        "news", "bad_group", "bad_request", "bad_request", "sport", "bad_request", "sport"]
    assert sync_redis.xlen(keys.stream("news")) == 2 and sync_redis.xlen(keys.stream("sport")) == 1
    refused = {(("reason", code),): n for code, n in (("bad_group", 1), ("bad_request", 3))}
    assert {labels: n for (name, labels), n in answer["counted"].items()
            if name == "groupcast_publish_errors_total"} == refused


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[1]", b"{}", b'{"messages": []}', b'{"messages": {"group": "news"}}',
     json.dumps({"messages": [{"group": "news", "data": n} for n in range(1001)]}).encode()],
)
async def test_bad_batches_are_answered_alike_and_store_nothing(apps, sync_redis, raw):
    answer = await same_answer(apps, lambda: request(raw, path=BATCH))
    assert answer["status"] == 400
    assert answer["log"][0][:3] == ("WARNING", f"Bad Request: {BATCH}", 400)
    assert sync_redis.keys(keys.stream("*")) == []


async def test_a_batch_redis_cannot_store_is_a_503_alike(apps, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    answer = await same_answer(apps, batch({"group": "news", "data": 1}, {"group": "bad group", "data": 1}))
    assert answer["status"] == 503 and dict(answer["headers"])["Retry-After"] == "2"
    assert json.loads(answer["body"])["error"]["code"] == "unavailable"


async def test_a_batch_not_replicated_is_a_503_alike(apps, settings):
    settings.GROUPCAST_REDIS_MIN_REPLICAS = 1  # the test Redis has no replica
    settings.GROUPCAST_REDIS_REPLICA_TIMEOUT_MS = 50
    answer = await same_answer(apps, batch(*[{"group": "news", "data": n, "idempotency_key": f"r{n}"} for n in range(3)]))
    assert answer["status"] == 503
    assert json.loads(answer["body"])["error"]["code"] == "not_replicated"
