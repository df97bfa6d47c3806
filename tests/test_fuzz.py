"""Fuzzing what clients send: WebSocket frames, group names and offsets, API request
bodies, and whole HTTP requests through the real views and a real Redis.

Each property is checked against an oracle written from the public contract (README,
"HTTP API" and "WebSocket protocol"), not from the code under test. The runs are bounded
and derandomized so `make test` stays fast and stable. A longer, random run (with the
OpenAPI contract run of tests/integration/test_schemathesis.py; about 10 minutes):

    GROUPCAST_FUZZ_EXAMPLES=5000 GROUPCAST_SCHEMATHESIS_EXAMPLES=500 \
        .venv/bin/python -m pytest tests/test_fuzz.py tests/integration/test_schemathesis.py

Each bug this fuzzing found (deep nesting, lone surrogates, NaN/Infinity, non-ASCII or
out-of-range offsets, Idempotency-Key reuse across groups, chunked bodies, odd
Content-Length values) is fixed and pinned by a test with its smallest input.
"""

import json
import math
import os
import string
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import hypothesis
import jsonschema
import pytest
from django.test import Client
from hypothesis import HealthCheck, assume, event, given
from hypothesis import strategies as st
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from service.api import requests
from service.api.errors import ApiError
from service.socket.frames import ClientFrame, FrameError, parse_client_frame
from service.groups import is_group_name, offset_after, parse_offset
from service.storage.jobs import job_create
from service.tokens import token_verify

LONG_RUN = int(os.environ.get("GROUPCAST_FUZZ_EXAMPLES", "0"))


def fuzz(max_examples):
    """Bounded and derandomized by default; GROUPCAST_FUZZ_EXAMPLES=N runs N random examples."""
    return hypothesis.settings(
        max_examples=LONG_RUN or max_examples,
        deadline=None,
        derandomize=not LONG_RUN,
        database=None,
        print_blob=True,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,  # state is per test, checked per example
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.filter_too_much,
        ],
    )


# The contract, written out independently of service/groups.py.

GROUP_ALPHABET = frozenset(string.ascii_letters + string.digits + "_.-")
U64 = 2**64


def spec_group(value):
    return isinstance(value, str) and 1 <= len(value) <= 100 and set(value) <= GROUP_ALPHABET


def spec_once_key(value):
    """An idempotency key (header or batch field): absent, or 1-200 printable ASCII."""
    return value is None or (isinstance(value, str) and 1 <= len(value) <= 200
                             and all(" " <= c <= "~" for c in value))


def spec_batch_message(message):
    return (isinstance(message, dict) and spec_group(message.get("group")) and "data" in message
            and spec_once_key(message.get("idempotency_key")))


def spec_offset(value):
    """A Redis Stream id (`ms` or `ms-seq`, each an unsigned 64-bit number, not the very
    last id, which nothing can follow) as a pair, else None."""
    if not isinstance(value, str):
        return None
    parts = value.split("-")
    if len(parts) > 2 or not all(1 <= len(p) <= 20 and set(p) <= set(string.digits) for p in parts):
        return None
    numbers = [int(p) for p in parts] + [0] * (2 - len(parts))
    if not all(n < U64 for n in numbers) or numbers == [U64 - 1, U64 - 1]:
        return None
    return tuple(numbers)


def spec_number(value):
    return type(value) in (int, float) and math.isfinite(value)


def strict_json(raw):
    """JSON as RFC 8259 has it: no NaN, no Infinity, no numbers that overflow to them."""

    def refuse(token):
        raise ValueError(f"not JSON: {token}")

    def finite(token):
        number = float(token)
        if not math.isfinite(number):
            refuse(token)
        return number

    return json.loads(raw, parse_constant=refuse, parse_float=finite)


# Strategies.

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
json_non_strings = json_values.filter(lambda value: not isinstance(value, str))
json_non_dicts = json_values.filter(lambda value: not isinstance(value, dict))
group_names = st.from_regex(r"[A-Za-z0-9_.-]{1,100}", fullmatch=True)
near_miss_groups = st.one_of(
    st.tuples(group_names, st.integers(0, 100), st.characters()).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
    ),
    st.from_regex(r"[A-Za-z0-9_.-]{101,110}", fullmatch=True),
    group_names.map(lambda name: name + "\n"),
    st.just(""),
)
any_groups = st.one_of(group_names, group_names, near_miss_groups, st.text(max_size=12), json_values)
offsets = st.one_of(
    st.tuples(st.integers(0, U64 - 1), st.integers(0, U64 - 1)).map(lambda p: f"{p[0]}-{p[1]}"),
    st.integers(0, U64 - 1).map(str),
)
# Digit strings around the offset grammar, including digits outside ASCII.
ascii_text = st.text(st.characters() | st.sampled_from(string.digits + "-"), max_size=30)
near_miss_offsets = st.one_of(
    st.from_regex(r"[0-9]{1,19}(-[0-9]{1,19})?", fullmatch=True),
    st.from_regex(r"-?[0-9]{0,19}-[0-9]{0,19}(-[0-9]{0,3})?", fullmatch=True),
    st.from_regex(r"[0-9]{21,25}(-[0-9]{1,3})?", fullmatch=True),
    st.integers(U64, 10**20 - 1).map(str),
    st.integers(U64, 10**20 - 1).map(lambda n: f"0-{n}"),
    offsets.map(lambda o: " " + o),
    offsets.map(lambda o: o + "\n"),
    ascii_text,
)


# WebSocket client frames


def spec_frame(body):
    """What the protocol says a decoded frame asks for: a ClientFrame or an error code."""
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        return "bad_frame"
    kind = body["type"]
    if kind == "ping":
        return ClientFrame("ping")
    if kind not in ("subscribe", "unsubscribe", "publish", "refresh"):
        return "unknown_type"
    if kind == "refresh":
        token = body.get("token")
        return ClientFrame("refresh", token=token) if isinstance(token, str) and token else "bad_frame"
    if not spec_group(body.get("group")):
        return "bad_group"
    if kind == "unsubscribe":
        return ClientFrame(kind, body["group"])
    if kind == "publish":
        if "data" not in body:
            return "bad_frame"
        text = json.dumps(body["data"], separators=(",", ":"), ensure_ascii=False)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no client could read it back
            return "bad_frame"
        return ClientFrame(kind, body["group"], data_json=text)
    since = body.get("since")
    if since is not None and spec_offset(since) is None:
        return "bad_offset"
    presence, join_leave = body.get("presence", False), body.get("join_leave", True)
    if type(presence) is not bool or type(join_leave) is not bool:
        return "bad_frame"
    return ClientFrame(kind, body["group"], since, presence, join_leave)


# A text frame is UTF-8, but its JSON may escape lone surrogates ("\ud800").
surrogate_text = st.text(
    st.characters(categories=["Cs"]) | st.sampled_from("ab0-"), min_size=1, max_size=6
)
frame_bodies = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["ping", "subscribe", "unsubscribe", "publish", "refresh"])
        | st.text(max_size=8)
        | json_values,
        "group": any_groups | surrogate_text,
        "since": offsets | near_miss_offsets | json_non_strings | surrogate_text,
        "data": json_values | surrogate_text,
        "token": st.text(max_size=20) | json_values,
        "presence": st.booleans() | json_values,
        "join_leave": st.booleans() | json_values,
    },
).flatmap(
    lambda frame: st.dictionaries(st.text(max_size=6), json_values, max_size=2).map(
        lambda extra: {**extra, **frame}
    )
)
frame_texts = st.one_of(
    st.tuples(frame_bodies, st.booleans()).map(lambda t: json.dumps(t[0], ensure_ascii=t[1])),
    st.tuples(frame_bodies, st.integers(0, 200)).map(lambda t: json.dumps(t[0])[: t[1]]),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.sampled_from(
        ["NaN", "[NaN]", '{"type": "ping", "x": Infinity}', "1e400", "", " ", "\ufeff{}", "{}" * 2]
    ),
)
FRAME_ERRORS = {"bad_json", "bad_frame", "unknown_type", "bad_group", "bad_offset"}


@fuzz(300)
@given(frame_texts)
def test_frame_parser_raises_nothing_but_frame_errors(text):
    try:
        frame = parse_client_frame(text)
    except FrameError as error:
        assert error.code in FRAME_ERRORS and error.message
    else:
        assert isinstance(frame, ClientFrame) and frame.type in ("ping", "subscribe", "unsubscribe", "publish", "refresh")


@fuzz(300)
@given(frame_bodies, st.booleans())
def test_frame_parser_accepts_exactly_the_valid_frames(body, ensure_ascii):
    expected = spec_frame(body)
    try:
        actual = parse_client_frame(json.dumps(body, ensure_ascii=ensure_ascii))
    except FrameError as error:
        actual = error.code
    assert actual == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[" * 5000, id="5000-open-arrays"),
        pytest.param('{"type": "ping", "x": ' + "[" * 3000 + "]" * 3000 + "}", id="nested-field"),
    ],
)
def test_deeply_nested_frames_are_bad_json_frames(text):
    try:
        parse_client_frame(text)
    except FrameError as error:
        assert error.code in ("bad_json", "bad_frame")


# Group names and offsets


@fuzz(400)
@given(st.one_of(group_names, near_miss_groups, st.text(max_size=120), json_values))
def test_group_names_are_exactly_the_channels_alphabet_up_to_100(value):
    assert is_group_name(value) == spec_group(value)


@fuzz(200)
@given(*[st.integers(0, U64 - 1)] * 4)
def test_offsets_parse_to_their_numbers_and_order_like_stream_ids(ms, seq, other_ms, other_seq):
    assume((ms, seq) != (U64 - 1, U64 - 1) and (other_ms, other_seq) != (U64 - 1, U64 - 1))
    assert parse_offset(f"{ms}-{seq}") == (ms, seq)
    assert parse_offset(str(ms)) == (ms, 0)
    first, second = f"{ms}-{seq}", f"{other_ms}-{other_seq}"
    assert offset_after(first, second) == ((ms, seq) > (other_ms, other_seq))
    assert not (offset_after(first, second) and offset_after(second, first))
    assert offset_after(first, None)


@fuzz(400)
@given(st.one_of(offsets, near_miss_offsets, json_non_strings))
def test_offsets_parse_exactly_when_they_are_stream_ids(value):
    expected = spec_offset(value)
    try:
        actual = parse_offset(value)
    except ValueError:
        actual = None
    assert actual == expected


@pytest.mark.parametrize(
    "since",
    [
        pytest.param("١٢٣-٠", id="arabic-indic-digits"),
        pytest.param("１７００００００００００００-０", id="fullwidth-digits"),
        pytest.param("99999999999999999999-0", id="ms-above-2**64"),
        pytest.param("0-18446744073709551616", id="seq-above-2**64"),
    ],
)
def test_offsets_redis_cannot_read_are_bad_offsets(since):
    with pytest.raises(ValueError):
        parse_offset(since)
    with pytest.raises(FrameError) as refused:
        parse_client_frame(json.dumps({"type": "subscribe", "group": "news", "since": since}))
    assert refused.value.code == "bad_offset"


# API request bodies (service/api/requests.py)


def spec_pattern(value):
    """A group name, or a prefix of one (possibly empty) followed by *, 100 characters at most."""
    if not isinstance(value, str):
        return False
    if value.endswith("*"):
        return len(value) <= 100 and (value == "*" or spec_group(value[:-1]))
    return spec_group(value)


def spec_info(value):
    """A JSON object of at most 1 kB as UTF-8 (lone surrogates cannot be sent on)."""
    if not isinstance(value, dict):
        return False
    try:
        return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")) <= 1024
    except UnicodeEncodeError:
        return False


def spec_token(body, max_ttl):
    sub, groups, ttl = body.get("sub"), body.get("groups"), body.get("ttl", 3600)
    publish, info = body.get("publish", []), body.get("info")
    if not (isinstance(sub, str) and 1 <= len(sub) <= 200):
        return None
    for patterns in (groups, publish):
        if not (isinstance(patterns, list) and all(spec_pattern(p) for p in patterns)):
            return None
    if not (type(ttl) is int and 1 <= ttl <= max_ttl):
        return None
    if info is not None and not spec_info(info):
        return None
    return sub, groups, ttl, publish, info


token_bodies = st.fixed_dictionaries(
    {},
    optional={
        "sub": st.text(min_size=1, max_size=210) | json_values,
        "groups": st.lists(group_names, max_size=4)
        | st.lists(any_groups, max_size=3)
        | json_values,
        "ttl": st.integers(-5, 90000)
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | json_values,
        "publish": st.lists(group_names.map(lambda g: g[:99] + "*") | group_names, max_size=3)
        | st.lists(st.text(max_size=5), max_size=2)
        | json_values,
        "info": st.dictionaries(st.text(max_size=8), json_values, max_size=3)
        | st.just({"big": "x" * 1100})
        | json_values,
    },
)


@fuzz(300)
@given(token_bodies)
def test_token_requests_are_read_exactly_or_refused_with_a_400(settings, body):
    expected = spec_token(body, settings.GROUPCAST_TOKEN_MAX_TTL)
    try:
        actual = requests.token_request(body)
    except ApiError as error:
        assert error.status == 400 and error.code in ("bad_request", "bad_group")
        actual = None
    assert actual == expected


# Times for "at": aware ones are valid, naive ones are not, free text is either.
aware_times = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60, 23 * 60)),
)
naive_times = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30))
EITHER = "either"


@st.composite
def job_bodies(draw):
    """(body, its `at` as the Unix time it must mean, None when absent, False when invalid,
    EITHER when free text leaves it open)."""
    groups = st.lists(group_names, min_size=1, max_size=5)
    well_formed = st.fixed_dictionaries(
        {"groups": groups, "data": json_values},
        optional={"rate": st.none() | st.floats(0.001, 100000) | st.integers(1, 100000)},
    )
    anything = st.fixed_dictionaries(
        {},
        optional={
            "groups": groups | st.lists(any_groups, max_size=3) | json_values,
            "data": json_values,
            "rate": st.none()
            | st.floats(-1, 200000, allow_nan=False)
            | st.integers(-1, 200000)
            | json_values,
        },
    )
    body = draw(well_formed | anything)
    when = draw(st.sampled_from(["now"] * 3 + ["delay"] * 2 + ["at", "aware", "naive", "text", "both"]))
    at = None
    if when in ("delay", "both"):
        body["delay"] = draw(
            st.floats(-10, 3e6, allow_nan=False) | st.integers(-10, 3 * 10**6) | json_values
        )
    if when in ("at", "both"):
        body["at"] = draw(st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53))
        at = float(body["at"])
    elif when == "aware":
        moment = draw(aware_times)
        body["at"] = moment.isoformat().replace("+00:00", draw(st.sampled_from(["Z", "+00:00"])))
        at = moment.timestamp()
    elif when == "naive":
        body["at"], at = draw(naive_times).isoformat(), False
    elif when == "text":
        body["at"] = draw(st.text(max_size=30) | json_values)
        if spec_number(body["at"]):
            at = float(body["at"])
        else:
            at = EITHER if isinstance(body["at"], str) else False
    return body, at


def spec_job(body, at, now=None):
    """Whether the contract accepts the job: True, False, or None when `at` leaves it open."""
    from django.conf import settings

    now = time.time() if now is None else now
    groups = body.get("groups")
    if not (isinstance(groups, list) and 1 <= len(groups) <= 10000):
        return False
    if not all(spec_group(g) for g in groups) or "data" not in body:
        return False
    if "at" in body and "delay" in body:
        return False
    longest = settings.GROUPCAST_JOB_MAX_DELAY
    if "delay" in body and not (spec_number(body["delay"]) and 0 <= body["delay"] <= longest):
        return False
    rate = body.get("rate")
    # slow enough to fit every distinct group within a run's time limit, at the most
    slowest = len(set(groups)) / settings.GROUPCAST_JOB_MAX_SECONDS
    if rate is not None and not (spec_number(rate) and slowest <= rate <= 100000):
        return False
    if at is False:
        return False
    if isinstance(at, float) and not now - settings.GROUPCAST_JOB_PAST_TOLERANCE <= at <= now + longest:
        return False  # "at" must be within the delay bound ahead, the tolerance behind
    return None if at == EITHER else True


@fuzz(300)
@given(job_bodies())
def test_job_requests_are_read_exactly_or_refused_with_a_400(drawn):
    body, at = drawn
    now = 1_800_000_000.0
    accepted = spec_job(body, at, now)
    try:
        groups, data, run_at, rate = requests.job_request(body, now)
    except ApiError as error:
        assert error.status == 400 and error.code in ("bad_request", "bad_group")
        assert accepted is not True, body
        return
    assert accepted is not False, body
    assert groups == list(dict.fromkeys(body["groups"])) and data == body["data"]
    assert math.isfinite(run_at) and rate == body.get("rate")
    if "delay" in body:
        assert run_at == now + body["delay"]
    elif isinstance(at, float):
        assert run_at == max(at, now)  # a moment ago runs now
    elif at is None:
        assert run_at == now


# Whole requests through the views, against a real Redis

ROOT = Path(__file__).resolve().parent.parent
OPENAPI = json.loads((ROOT / "service" / "api" / "openapi.json").read_text())
_OPENAPI_URI = "urn:groupcast:openapi"
_REGISTRY = Registry().with_resource(
    _OPENAPI_URI, Resource.from_contents(OPENAPI, default_specification=DRAFT202012)
)


def _pointer(*parts):
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def assert_documented(route, method, status, body):
    """The answer is one the OpenAPI description documents for this operation, schema and all."""
    responses = OPENAPI["paths"][route][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {route} answered undocumented {status}: {body}"
    response = responses[str(status)]
    pointer = _pointer("paths", route, method, "responses", status)
    if "$ref" in response:
        pointer = response["$ref"][1:]
    schema = {"$ref": f"{_OPENAPI_URI}#{pointer}/content/application~1json/schema"}
    jsonschema.Draft202012Validator(schema, registry=_REGISTRY).validate(body)


def assert_error(body, code=None):
    jsonschema.Draft202012Validator(
        {"$ref": f"{_OPENAPI_URI}#/components/schemas/Error"}, registry=_REGISTRY
    ).validate(body)
    if code is not None:
        assert body["error"]["code"] == code, body


def redis_state(redis, prefix):
    """Every key under the test's prefix with a dump of its value."""
    keys = sorted(redis.scan_iter(match=f"{prefix}:*", count=1000))
    pipe = redis.pipeline(transaction=False)
    for key in keys:
        pipe.dump(key)
    return dict(zip(keys, pipe.execute(), strict=True))


def assert_stored_valid(redis, prefix, key):
    """What groupcast keeps in Redis is well-formed: names, JSON, times, job bookkeeping."""
    kind, _, rest = key.decode()[len(prefix) + 1 :].partition(":")
    if kind == "stream":
        assert spec_group(rest), key
        for offset, fields in redis.xrange(key):
            assert spec_offset(offset.decode()) is not None
            strict_json(fields[b"d"].decode())
    elif kind == "job":
        record = {k.decode(): v.decode() for k, v in redis.hgetall(key).items()}
        groups = strict_json(record["groups"])
        assert isinstance(groups, list) and groups and all(spec_group(g) for g in groups)
        strict_json(record["data"])
        for field in ("run_at", "created", "rate"):
            assert math.isfinite(float(record[field])), (field, record)
        assert redis.zscore(f"{prefix}:jobs:due", key) is not None, "job recorded but never due"
    elif kind == "jobs":
        for member, score in redis.zrange(key, 0, -1, withscores=True):
            assert math.isfinite(score) and redis.exists(member), (key, member, score)
    elif kind == "once":
        scope, _, once_key = rest.partition(":")
        assert scope == "api" and 1 <= len(once_key) <= 200, key
        assert spec_offset(redis.get(key).decode()) is not None
    else:
        raise AssertionError(f"unexpected key {key!r}")


# What a WSGI server can hand Django in a header: latin-1 text without control characters.
latin1_headers = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_categories=["Cc"]),
    max_size=40,
)
once_keys = st.sampled_from(["retry-1", "retry-2"]) | latin1_headers
MAX_BODY_BYTES = 4096
ENDPOINTS = {
    "publish": ("/api/v1/publish", "post"),
    "batch": ("/api/v1/batch", "post"),
    "tokens": ("/api/v1/tokens", "post"),
    "jobs": ("/api/v1/jobs", "post"),
    "job": ("/api/v1/jobs/{job_id}", "get"),
    "group": ("/api/v1/groups/{name}", "get"),
}
OTHER_METHODS = ["get", "post", "put", "patch", "delete", "options"]


@pytest.fixture
def wire(settings, sync_redis, prefix):
    """A test client, the API key, a job that exists, and the idempotency keys used so far."""
    settings.GROUPCAST_MAX_BODY_BYTES = MAX_BODY_BYTES  # so 413s are cheap to reach
    # A long run (make fuzz) accepts more jobs than the queue bound; that bound has tests
    # of its own (test_api.py), and here would make an accepted job's 202 a 503.
    settings.GROUPCAST_JOB_MAX_QUEUED = 10**9
    job_id = job_create(groups=["news"], data={"x": 1}, run_at=4_000_000_000.0)
    return {
        "client": Client(),
        "key": settings.GROUPCAST_API_KEYS[0],
        "job": job_id,
        "once": {},
        "redis": sync_redis,
        "prefix": prefix,
    }


def authorizations(key):
    """(Authorization header or None, whether it carries the API key)."""
    variants = [f"bearer  {key} ", "Bearer ", f"Basic {key}", "Bearer wrong-key-0123456789", key]
    header = st.sampled_from(["key"] * 12 + ["variant", "none", "random"]).flatmap(
        lambda kind: {
            "key": st.just(f"Bearer {key}"),
            "variant": st.sampled_from(variants),
            "none": st.none(),
            "random": latin1_headers,
        }[kind]
    )

    def carries_key(value):
        scheme, _, credentials = (value or "").partition(" ")
        return scheme.lower() == "bearer" and credentials.strip() == key

    return header.map(lambda value: (value, carries_key(value)))


@st.composite
def request_bodies(draw, name, headers):
    """(raw body, status the contract expects for it with a valid key, or None if either)."""
    if name == "publish":
        body = draw(
            st.fixed_dictionaries({}, optional={"group": any_groups, "data": json_values})
            | st.fixed_dictionaries({"group": group_names, "data": json_values})
            | st.fixed_dictionaries({"group": group_names, "data": json_values})
        )
        once_key = draw(st.none() | once_keys)
        if once_key is not None:
            headers["HTTP_IDEMPOTENCY_KEY"] = once_key
        valid = spec_group(body.get("group")) and "data" in body
        expected = 200 if valid and spec_once_key(once_key) else 400
    elif name == "batch":
        message = (
            st.fixed_dictionaries({}, optional={"group": any_groups, "data": json_values,
                                                "idempotency_key": once_keys | json_scalars})
            | st.fixed_dictionaries({"group": group_names, "data": json_values},
                                    optional={"idempotency_key": once_keys})
            | json_non_dicts
        )
        body = draw(st.fixed_dictionaries({"messages": st.lists(message, max_size=5)})
                    | st.fixed_dictionaries({}, optional={"messages": json_values}))
        messages = body.get("messages")
        expected = 200 if isinstance(messages, list) and 1 <= len(messages) <= 1000 else 400
    elif name == "tokens":
        well_formed = st.fixed_dictionaries(
            {"sub": st.text(min_size=1, max_size=200), "groups": st.lists(group_names, max_size=3)},
            optional={"ttl": st.integers(1, 86400)},
        )
        body = draw(token_bodies | well_formed)
        expected = 200 if spec_token(body, 86400) else 400
    else:
        body, at = draw(job_bodies())
        expected = {True: 202, False: 400, None: None}[spec_job(body, at)]
    if draw(st.sampled_from([False] * 19 + [True])):
        body["pad"] = "x" * draw(st.integers(0, 6000))

    encoding = draw(st.sampled_from(["utf-8"] * 10 + ["ascii", "utf-16", "cut", "bytes", "value", "empty"]))
    if encoding == "utf-8":
        raw = json.dumps(body, ensure_ascii=False).encode()
    elif encoding == "ascii":
        raw = json.dumps(body).encode()
    elif encoding == "utf-16":
        raw = json.dumps(body).encode("utf-16")
    elif encoding == "cut":  # a prefix of a JSON object is never JSON
        raw = json.dumps(body).encode()
        raw, expected = raw[: draw(st.integers(0, len(raw) - 1))], 400
    elif encoding == "bytes":
        raw, expected = draw(st.binary(max_size=300)), None
    elif encoding == "value":
        raw, expected = json.dumps(draw(json_non_dicts)).encode(), 400
    else:
        raw, expected = b"", 400
    return raw, 413 if len(raw) > MAX_BODY_BYTES else expected


CONTENT_TYPES = ["application/json"] * 4 + [
    "text/plain", "", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"
]


@st.composite
def api_requests(draw, key, job_id):
    """One request (endpoint, method, path, headers, raw body) and the status the contract
    gives it, or None where the request leaves it open."""
    name = draw(st.sampled_from(sorted(ENDPOINTS)))
    route, method = ENDPOINTS[name]
    method = draw(st.sampled_from([method] * 24 + OTHER_METHODS))
    authorization, authorized = draw(authorizations(key))
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    path, raw, content_type, routed = route, b"", "application/json", True

    if name == "group":
        segment = draw(group_names | near_miss_groups | st.text(max_size=10))
        expected = 200 if spec_group(segment) else 400
    elif name == "job":
        segment = draw(st.sampled_from([job_id, job_id.upper(), job_id + "0"]) | st.text(max_size=40))
        expected = 200 if segment == job_id else 404
    else:
        raw, expected = draw(request_bodies(name, headers))
        content_type = draw(st.sampled_from(CONTENT_TYPES))
        # Before the body is read. Django's test client sends no Content-Type with no body.
        if content_type != "application/json" or not raw:
            expected = 415
    if name in ("group", "job"):
        path = route.rpartition("/")[0] + "/" + quote(segment, safe="")
        routed = bool(segment) and "/" not in segment
    if draw(st.sampled_from([False] * 19 + [True])):
        # Never more than the body: Django's test payload asserts where a server would wait.
        headers["CONTENT_LENGTH"] = draw(
            st.sampled_from(["-1", "abc", "1e3", "", " 12", "99999999"])
            | latin1_headers.filter(lambda value: not value.isdigit())
            | st.integers(0, len(raw)).map(str)
        )
        expected = None

    if not routed:
        expected = 404  # no URL pattern matches: before the method or the key are looked at
    elif method != ENDPOINTS[name][1]:
        expected = 405
    elif not authorized:
        expected = 401
    return {
        "name": name, "route": route, "routed": routed, "method": method, "path": path,
        "headers": headers, "content_type": content_type, "raw": raw, "expected": expected,
    }


@fuzz(400)
@given(data=st.data())
def test_every_answer_is_documented_json_and_nothing_invalid_is_stored(wire, data):
    request = data.draw(api_requests(wire["key"], wire["job"]))
    redis, prefix = wire["redis"], wire["prefix"]
    before = redis_state(redis, prefix)
    response = wire["client"].generic(
        request["method"].upper(), request["path"], request["raw"],
        content_type=request["content_type"], **request["headers"],
    )
    after = redis_state(redis, prefix)
    status = response.status_code
    event(f"{request['method'].upper()} {request['route']} -> {status}")  # --hypothesis-show-statistics

    assert status < 500, f"{status} for {request}"
    if request["expected"] is not None:
        assert status == request["expected"], (response.content, request)
    assert response["Content-Type"] == "application/json"
    answer = strict_json(response.content.decode())
    if not request["routed"]:
        assert_error(answer, "not_found")
    elif status == 405:
        assert_error(answer, "method_not_allowed")
        assert response["Allow"] == ENDPOINTS[request["name"]][1].upper()
    else:
        assert_documented(request["route"], request["method"], status, answer)
    if status == 401:
        assert response["WWW-Authenticate"].startswith("Bearer ")
        assert wire["key"] not in response.content.decode()

    assert set(before) <= set(after), "a request deleted something"
    changed = [key for key in after if before.get(key) != after[key]]
    if status >= 400:
        assert changed == [], f"refused with {status} but changed {changed}"
        return
    for key in changed:
        assert_stored_valid(redis, prefix, key)
    sent = json.loads(request["raw"]) if request["raw"] else None
    if request["name"] == "publish":
        once_key = request["headers"].get("HTTP_IDEMPOTENCY_KEY")
        repeated = once_key is not None and (answer["group"], once_key) in wire["once"]
        assert_published(wire, answer, sent["data"], once_key)
        assert not (repeated and changed), "published twice"
    elif request["name"] == "batch":
        assert len(answer["results"]) == len(sent["messages"])
        for message, result in zip(sent["messages"], answer["results"]):
            if not spec_batch_message(message):
                assert "offset" not in result and result["error"]["code"] in ("bad_request", "bad_group")
            else:
                assert result["group"] == message["group"]
                assert_published(wire, result, message["data"], message.get("idempotency_key"))
    elif request["name"] == "tokens":
        claims = token_verify(answer["token"])
        assert claims.sub == sent["sub"] and claims.groups.names == frozenset(sent["groups"])
        assert answer["expires_in"] == sent.get("ttl", 3600)
    elif request["name"] == "jobs":
        record = redis.hgetall(f"{prefix}:job:{answer['job']}")
        assert strict_json(record[b"groups"].decode()) == list(dict.fromkeys(sent["groups"]))
        assert strict_json(record[b"data"].decode()) == sent["data"]


def assert_published(wire, answer, data, once_key):
    """A publish's answer: the offset of its first publish under its key (scoped to its
    group), else the offset of its data in the group's stream."""
    scoped = (answer["group"], once_key)
    if once_key is not None and scoped in wire["once"]:
        assert answer["offset"] == wire["once"][scoped], "published twice"
        return
    stream = f"{wire['prefix']}:stream:{answer['group']}"
    [(_, fields)] = wire["redis"].xrange(stream, answer["offset"], answer["offset"])
    assert strict_json(fields[b"d"].decode()) == data
    if once_key is not None:
        wire["once"][scoped] = answer["offset"]


# Bugs found by the fuzzing above, each pinned by its smallest input.


def _post(client, key, path, raw, **headers):
    response = client.generic("POST", path, raw, content_type="application/json",
                              HTTP_AUTHORIZATION=f"Bearer {key}", **headers)
    return response.status_code, response


@pytest.mark.parametrize("path", ["/api/v1/publish", "/api/v1/tokens", "/api/v1/jobs"])
def test_deeply_nested_bodies_are_a_400(settings, sync_redis, prefix, path):
    status, response = _post(Client(), settings.GROUPCAST_API_KEYS[0], path, "[" * 5000)
    assert status == 400 and response.json()["error"]["code"] == "bad_json"


@pytest.mark.parametrize(
    "path, raw",
    [
        ("/api/v1/publish", '{"group": "news", "data": "\\ud800"}'),
        ("/api/v1/jobs", '{"groups": ["news"], "data": {"text": "\\udfff"}}'),
        # no \\u escape: the UTF-8 form of U+D800, which the body's decoding lets through
        ("/api/v1/publish", b'{"group": "news", "data": "\xed\xa0\x80"}'),
        ("/api/v1/jobs", b'{"groups": ["news"], "data": "x\xed\xbf\xbf"}'),
    ],
)
def test_lone_surrogates_in_data_are_a_400(settings, sync_redis, prefix, path, raw):
    status, response = _post(Client(), settings.GROUPCAST_API_KEYS[0], path, raw)
    assert status == 400 and response.json()["error"]["code"] in ("bad_json", "bad_request")
    assert redis_state(sync_redis, prefix) == {}


@pytest.mark.parametrize(
    "path, raw",
    [
        ("/api/v1/publish", '{"group": "news", "data": NaN}'),
        ("/api/v1/publish", '{"group": "news", "data": {"t": Infinity}}'),
        ("/api/v1/publish", '{"group": "news", "data": [1e400]}'),
        ("/api/v1/jobs", '{"groups": ["news"], "data": -Infinity}'),
    ],
)
def test_non_json_numbers_are_a_400_and_never_stored(settings, sync_redis, prefix, path, raw):
    status, response = _post(Client(), settings.GROUPCAST_API_KEYS[0], path, raw)
    assert status == 400 and response.json()["error"]["code"] in ("bad_json", "bad_request")
    assert redis_state(sync_redis, prefix) == {}


@pytest.mark.parametrize("at", ["NaN", "1e400", "-1e400"])
def test_job_times_must_be_finite(settings, sync_redis, prefix, at):
    raw = '{"groups": ["news"], "data": 1, "at": %s}' % at
    status, response = _post(Client(), settings.GROUPCAST_API_KEYS[0], "/api/v1/jobs", raw)
    assert status == 400 and response.json()["error"]["code"] in ("bad_json", "bad_request")
    assert redis_state(sync_redis, prefix) == {}


def test_a_content_length_of_superscript_digits_is_a_4xx(settings, sync_redis, prefix):
    status, response = _post(
        Client(), settings.GROUPCAST_API_KEYS[0], "/api/v1/publish", '{"group": "news", "data": 1}',
        CONTENT_LENGTH="\u00b2",
    )
    assert 400 <= status < 500
    assert_error(response.json())


def test_token_subjects_are_utf8_strings(settings):
    status, response = _post(
        Client(), settings.GROUPCAST_API_KEYS[0], "/api/v1/tokens", '{"sub": "\\ud800", "groups": []}'
    )
    assert status == 400 and response.json()["error"]["code"] in ("bad_json", "bad_request")


def test_an_idempotency_key_reused_for_another_group_is_not_a_false_success(settings, sync_redis, prefix):
    client, key = Client(), settings.GROUPCAST_API_KEYS[0]
    _post(client, key, "/api/v1/publish", '{"group": "alpha", "data": 1}', HTTP_IDEMPOTENCY_KEY="k1")
    status, response = _post(
        client, key, "/api/v1/publish", '{"group": "beta", "data": 2}', HTTP_IDEMPOTENCY_KEY="k1"
    )
    if status == 200:
        offset = response.json()["offset"]
        assert sync_redis.xrange(f"{prefix}:stream:beta", offset, offset), "answered, not stored"
    else:
        assert status in (409, 422), status
