"""The HTTP API, through Django's test client against a real Redis."""

import json

import pytest
from django.test import Client

from service.storage import keys


@pytest.fixture
def api(settings):
    key = settings.GROUPCAST_API_KEYS[0]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")

    def call(method, path, body=None, raw=None, **headers):
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        kwargs = {"content_type": "application/json"} if data is not None else {}
        response = getattr(client, method)(path, data, **kwargs, **headers) if data is not None else getattr(client, method)(path, **headers)
        return response.status_code, response.json(), response

    return call


def test_publish_answers_the_offset_of_the_stored_message(api, sync_redis):
    status, body, _ = api("post", "/api/v1/publish", {"group": "news", "data": {"text": "hi"}})
    assert status == 200 and body["group"] == "news"
    [(offset, fields)] = sync_redis.xrange(keys.stream("news"))
    assert body["offset"] == offset.decode() and fields[b"d"] == b'{"text":"hi"}'


@pytest.mark.parametrize("data", [None, 0, "text", [1, 2], {"nested": {"deep": [True, None]}}])
def test_any_json_value_is_data(api, data):
    status, _, _ = api("post", "/api/v1/publish", {"group": "news", "data": data})
    assert status == 200


def test_idempotency_key_makes_retries_exactly_once(api, sync_redis):
    first = api("post", "/api/v1/publish", {"group": "news", "data": 1}, HTTP_IDEMPOTENCY_KEY="req-42")
    again = api("post", "/api/v1/publish", {"group": "news", "data": 1}, HTTP_IDEMPOTENCY_KEY="req-42")
    assert first[1]["offset"] == again[1]["offset"]
    assert sync_redis.xlen(keys.stream("news")) == 1


@pytest.mark.parametrize(
    "raw, code",
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "bad_request"),
        ('{"group": "news"}', "bad_request"),
        ('{"group": "bad group", "data": 1}', "bad_group"),
        ('{"group": "' + "x" * 101 + '", "data": 1}', "bad_group"),
        ('{"group": 5, "data": 1}', "bad_group"),
        ('{"data": 1}', "bad_group"),
        (b"\xff\xfe", "bad_json"),
    ],
)
def test_bad_publish_bodies_are_400_with_a_clear_error_and_store_nothing(api, sync_redis, raw, code):
    status, body, _ = api("post", "/api/v1/publish", raw=raw)
    assert status == 400
    assert body["error"]["code"] == code and body["error"]["message"]
    assert sync_redis.keys(keys.stream("*")) == []


@pytest.mark.parametrize("path", ["/api/v1/publish", "/api/v1/tokens", "/api/v1/jobs"])
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "",
     "application/json; charset=latin-1", "application/jsonx"],
)
def test_a_body_not_sent_as_json_is_415_and_stores_nothing(settings, sync_redis, path, content_type):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {settings.GROUPCAST_API_KEYS[0]}")
    body = json.dumps({"group": "news", "data": 1, "sub": "u", "groups": ["news"]})
    response = client.generic("POST", path, body, content_type=content_type)
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"
    assert sync_redis.keys(keys.stream("*")) == []


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON;charset=UTF-8"])
def test_json_with_a_utf8_charset_is_json(settings, content_type):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {settings.GROUPCAST_API_KEYS[0]}")
    response = client.post("/api/v1/publish", json.dumps({"group": "news", "data": "é"}), content_type=content_type)
    assert response.status_code == 200


@pytest.mark.parametrize("once_key", ["caf\u00e9", "tab\tkey", "", "k" * 201, "\x7f"])
def test_an_idempotency_key_outside_printable_ascii_is_400(api, sync_redis, once_key):
    status, body, _ = api("post", "/api/v1/publish", {"group": "news", "data": 1}, HTTP_IDEMPOTENCY_KEY=once_key)
    assert status == 400 and "Idempotency-Key" in body["error"]["message"]
    assert sync_redis.keys(keys.stream("*")) == []


def test_oversized_body_is_413(api, settings):
    settings.GROUPCAST_MAX_BODY_BYTES = 1000
    status, body, _ = api("post", "/api/v1/publish", {"group": "news", "data": "x" * 2000})
    assert status == 413 and body["error"]["code"] == "too_large"


@pytest.mark.parametrize("header", [None, "Bearer wrong-key-0123456789", "Basic abc", "Bearer "])
def test_missing_or_wrong_api_key_is_401(settings, header):
    client = Client(**({"HTTP_AUTHORIZATION": header} if header else {}))
    response = client.post("/api/v1/publish", json.dumps({"group": "news", "data": 1}), content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert settings.GROUPCAST_API_KEYS[0] not in response.content.decode()


def test_wrong_method_is_405(api):
    status, body, response = api("get", "/api/v1/publish")
    assert status == 405 and response["Allow"] == "POST"


def test_unknown_path_is_a_json_404(api):
    status, body, _ = api("get", "/api/v1/nothing")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_redis_unreachable_is_503_with_retry_after(api, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # the clients follow the setting
    status, body, response = api("post", "/api/v1/publish", {"group": "news", "data": 1})
    assert status == 503 and body["error"]["code"] == "unavailable"
    assert response["Retry-After"] == "2"


def test_tokens_are_jwts_for_the_requested_groups(api):
    from service.tokens import token_verify

    status, body, _ = api("post", "/api/v1/tokens", {"sub": "user-1", "groups": ["news"], "ttl": 60})
    assert status == 200 and body["expires_in"] == 60
    claims = token_verify(body["token"])
    assert claims.sub == "user-1" and claims.groups.names == {"news"}


@pytest.mark.parametrize(
    "body",
    [
        {"groups": ["news"]},
        {"sub": "", "groups": ["news"]},
        {"sub": "u", "groups": "news"},
        {"sub": "u", "groups": ["bad group"]},
        {"sub": "u", "groups": ["news"], "ttl": 0},
        {"sub": "u", "groups": ["news"], "ttl": "60"},
        {"sub": "u", "groups": ["news"], "ttl": 10**9},
    ],
)
def test_bad_token_requests_are_400(api, body):
    status, reply, _ = api("post", "/api/v1/tokens", body)
    assert status == 400 and reply["error"]["message"]


def test_group_info_counts_subscribers_and_shows_the_last_offset(api):
    status, body, _ = api("get", "/api/v1/groups/news")
    assert (status, body) == (200, {"group": "news", "subscribers": 0, "last_offset": "0-0"})
    _, published, _ = api("post", "/api/v1/publish", {"group": "news", "data": 1})
    _, body, _ = api("get", "/api/v1/groups/news")
    assert body["last_offset"] == published["offset"]


def test_jobs_are_recorded_and_readable(api):
    status, body, _ = api("post", "/api/v1/jobs", {"groups": ["a", "b"], "data": {"x": 1}, "delay": 60})
    assert status == 202 and body["status"] == "queued"
    status, job, _ = api("get", f"/api/v1/jobs/{body['job']}")
    assert status == 200 and job["status"] == "queued" and job["groups"] == 2 and job["attempts"] == 0
    assert job["run_at"] > job["created"] + 59


@pytest.mark.parametrize(
    "body",
    [
        {"groups": [], "data": 1},
        {"groups": ["bad group"], "data": 1},
        {"groups": ["a"]},
        {"groups": ["a"], "data": 1, "delay": -1},
        {"groups": ["a"], "data": 1, "at": "tomorrow"},
        {"groups": ["a"], "data": 1, "at": "2030-01-01T00:00:00"},
        {"groups": ["a"], "data": 1, "at": 1, "delay": 1},
        {"groups": ["a"], "data": 1, "rate": 0},
    ],
)
def test_bad_job_requests_are_400(api, body):
    status, reply, _ = api("post", "/api/v1/jobs", body)
    assert status == 400 and reply["error"]["message"]


def test_unknown_job_is_404(api):
    status, body, _ = api("get", "/api/v1/jobs/0123456789abcdef")
    assert status == 404 and body["error"]["code"] == "not_found"


def test_health_endpoints_and_metrics(api):
    client = Client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").json() == {"status": "ready"}
    text = client.get("/metrics").content.decode()
    assert "groupcast_publish_total" in text


def test_demo_page_and_scripts_are_served():
    client = Client()
    page = client.get("/").content.decode()
    assert "groupcast" in page and "/static/groupcast.js" in page
    script = client.get("/static/groupcast.js")
    assert script.status_code == 200 and b"GroupcastClient" in script.content
    assert client.get("/static/../settings.py").status_code == 404


def test_a_publish_not_replicated_in_time_is_not_acknowledged(api, settings):
    settings.GROUPCAST_REDIS_MIN_REPLICAS = 1  # the test Redis has no replica
    settings.GROUPCAST_REDIS_REPLICA_TIMEOUT_MS = 50
    status, body, response = api("post", "/api/v1/publish", {"group": "news", "data": 1}, HTTP_IDEMPOTENCY_KEY="r1")
    assert status == 503 and body["error"]["code"] == "not_replicated"
    assert response["Retry-After"] == "2"


def test_the_openapi_description_is_served_without_a_key():
    response = Client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.") and "/api/v1/publish" in document["paths"]


def job_refusals(reason):
    from service import metrics

    return metrics.JOBS_REFUSED.labels(reason)._value.get()


def test_a_rate_too_slow_for_the_time_limit_is_400_naming_the_slowest_rate(api, settings):
    settings.GROUPCAST_JOB_MAX_SECONDS = 600
    before = job_refusals("rate")
    status, body, _ = api("post", "/api/v1/jobs", {"groups": ["a", "b", "c"], "data": 1, "rate": 1e-9})
    assert status == 400 and body["error"]["code"] == "bad_request"
    assert "from 0.005 to 100000" in body["error"]["message"] and "600 s" in body["error"]["message"]
    assert job_refusals("rate") == before + 1
    # the slowest rate that fits is accepted
    assert api("post", "/api/v1/jobs", {"groups": ["a", "b", "c"], "data": 1, "rate": 0.005})[0] == 202


def test_a_delay_past_the_bound_is_400(api, settings):
    settings.GROUPCAST_JOB_MAX_DELAY = 3600
    before = job_refusals("delay")
    status, body, _ = api("post", "/api/v1/jobs", {"groups": ["a"], "data": 1, "delay": 3601})
    assert status == 400 and "from 0 to 3600" in body["error"]["message"]
    assert job_refusals("delay") == before + 1
    assert api("post", "/api/v1/jobs", {"groups": ["a"], "data": 1, "delay": 3600})[0] == 202


@pytest.mark.parametrize("ago, accepted", [(3600, False), (10**9, False), (60, True)])
def test_at_in_the_past_is_accepted_only_within_the_tolerance_and_then_runs_now(api, settings, ago, accepted):
    import time

    settings.GROUPCAST_JOB_PAST_TOLERANCE = 300
    before = job_refusals("at")
    asked = time.time()
    status, body, _ = api("post", "/api/v1/jobs", {"groups": ["a"], "data": 1, "at": asked - ago})
    if not accepted:
        assert status == 400 and "300 seconds in the past" in body["error"]["message"]
        assert job_refusals("at") == before + 1
        return
    assert status == 202
    job = api("get", f"/api/v1/jobs/{body['job']}")[1]
    assert job["run_at"] >= asked  # in turn, not ahead of every job due


def test_at_past_the_bound_is_400(api, settings):
    import time

    settings.GROUPCAST_JOB_MAX_DELAY = 3600
    status, body, _ = api("post", "/api/v1/jobs", {"groups": ["a"], "data": 1, "at": time.time() + 7200})
    assert status == 400 and "within 3600 seconds" in body["error"]["message"]


def test_a_full_job_queue_is_503_with_retry_after_and_records_nothing(api, settings, sync_redis):
    settings.GROUPCAST_JOB_MAX_QUEUED = 2
    for _ in range(2):
        assert api("post", "/api/v1/jobs", {"groups": ["a"], "data": 1, "delay": 60})[0] == 202
    before = job_refusals("queue_full")
    status, body, response = api("post", "/api/v1/jobs", {"groups": ["a"], "data": 1})
    assert status == 503 and body["error"]["code"] == "queue_full"
    assert response["Retry-After"] == "10"
    assert job_refusals("queue_full") == before + 1
    assert len(sync_redis.keys(keys.job("*"))) == 2


def test_json_answers_end_with_a_newline_and_carry_a_request_id():
    client = Client()
    for path in ("/healthz", "/readyz", "/api/v1/openapi.json", "/api/v1/publish", "/no/such/page"):
        response = client.get(path)
        assert response["Content-Type"].startswith("application/json"), path
        assert response.content.endswith(b"\n") and not response.content.endswith(b"\n\n"), path
        assert response["Content-Length"] == str(len(response.content)), path  # not chunked
        assert len(response["X-Request-ID"]) == 32, path
    assert client.get("/healthz", HTTP_X_REQUEST_ID="trace-1.a:b")["X-Request-ID"] == "trace-1.a:b"
    assert client.get("/healthz", HTTP_X_REQUEST_ID="x" * 129)["X-Request-ID"] != "x" * 129
