"""Reading and checking API requests; each problem is a 4xx naming what is wrong."""

import json
import math
from datetime import datetime

from django.conf import settings

from service.api.errors import ApiError, bad_request
from service.groups import GROUP_RULE, is_group_name, is_group_pattern
from service.tokens import info_valid

MAX_JOB_GROUPS = 10000
JSON_CHARSETS = ("utf-8", "utf8")
MAX_JOB_RATE = 100000
# Messages in one batch publish: its pipeline and its answer stay small enough to hold.
MAX_BATCH_MESSAGES = 1000


def json_body(request):
    """The request's JSON object: 415 when not sent as JSON, 413 when too large, 400 when
    not a JSON object of finite numbers and valid Unicode (what every client can read back)."""
    _require_json(request)
    limit = settings.GROUPCAST_MAX_BODY_BYTES
    length = request.META.get("CONTENT_LENGTH", "")
    if length:
        if not (length.isascii() and length.isdigit()):
            raise bad_request("Content-Length is not a number")
        if int(length) > limit:
            raise ApiError(413, "too_large", f"body over {limit} bytes")
        stream = request
    elif request.META.get("wsgi.input_terminated"):
        # No Content-Length (a chunked body): Django would read nothing, so read the
        # server's decoded stream (safe to read to its end, the server says), bounded.
        stream = request.META["wsgi.input"]
    else:
        stream = request
    raw = stream.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(413, "too_large", f"body over {limit} bytes")
    try:
        encoding = json.detect_encoding(raw)
        # json.loads(raw, parse_constant=..., parse_float=...), with the decoder built once
        body = _DECODER.decode(raw.decode(encoding, "surrogatepass"))
        # Lone surrogates parse (as \ud800 escapes) but cannot be stored or sent on.
        if _may_hold_surrogates(raw, encoding):
            _UNICODE.encode(body).encode()
    except RecursionError:
        raise bad_request("body is nested too deeply", "bad_json") from None
    except UnicodeEncodeError:
        raise bad_request("body has strings that are not valid Unicode", "bad_json") from None
    except (ValueError, UnicodeDecodeError):
        raise bad_request("body is not valid JSON", "bad_json") from None
    if not isinstance(body, dict):
        raise bad_request("body must be a JSON object")
    return body


def _may_hold_surrogates(raw, encoding):
    """False when no string of a UTF-8 body can hold a surrogate: one comes only from a
    \\u escape or from the UTF-8 form of a surrogate (ED A0-BF ..., which "surrogatepass"
    lets through). Most bodies have neither, and are not encoded a second time to check."""
    return encoding != "utf-8" or b"\\u" in raw or b"\xed" in raw


def _require_json(request):
    """415 unless the body is declared `application/json` (UTF-8: JSON's only charset),
    rather than reading a body declared as text or a form as if it were JSON."""
    charset = request.content_params.get("charset", "utf-8").lower()
    if request.content_type != "application/json" or charset not in JSON_CHARSETS:
        raise ApiError(
            415, "unsupported_media_type",
            "the body must be sent as Content-Type: application/json (charset utf-8, if any)",
        )


def idempotency_key(request):
    """The Idempotency-Key header, or None: 1-200 printable ASCII characters, else 400."""
    key = request.META.get("HTTP_IDEMPOTENCY_KEY")  # request.headers' value, built cheaper
    if key is not None and not _once_key_valid(key):
        raise bad_request("Idempotency-Key must be 1-200 printable ASCII characters")
    return key


def _once_key_valid(key):
    return isinstance(key, str) and 1 <= len(key) <= 200 and key.isascii() and key.isprintable()


def _not_json(name):
    raise ValueError(f"{name} is not JSON")


def _finite(text):
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


# Built once: json.loads and json.dumps with options build a decoder or encoder per call.
_DECODER = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite)
_UNICODE = json.JSONEncoder(ensure_ascii=False)


def group_field(body, name="group"):
    group = body.get(name)
    if not is_group_name(group):
        raise bad_request(f"{name} must be {GROUP_RULE}", "bad_group")
    return group


def data_field(body):
    if "data" not in body:
        raise bad_request('"data" is required (any JSON value)')
    return body["data"]


def publish_request(body):
    return group_field(body), data_field(body)


def batch_messages(body):
    """The "messages" of a batch publish: a list of 1 to MAX_BATCH_MESSAGES, else 400."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_BATCH_MESSAGES:
        raise bad_request(f'"messages" must be a list of 1 to {MAX_BATCH_MESSAGES} messages')
    return messages


def batch_message(message):
    """(group, data, idempotency key or None) of one message of a batch, or its 400."""
    if not isinstance(message, dict):
        raise bad_request('a message must be a JSON object {"group", "data", "idempotency_key"?}')
    group, data = publish_request(message)
    once_key = message.get("idempotency_key")
    if once_key is not None and not _once_key_valid(once_key):
        raise bad_request('"idempotency_key" must be 1-200 printable ASCII characters')
    return group, data, once_key


def sub_field(body):
    sub = body.get("sub")
    if not isinstance(sub, str) or not 1 <= len(sub) <= 200:
        raise bad_request('"sub" must be a string of 1-200 characters')
    return sub


def patterns_field(body, name, default=None):
    patterns = body.get(name, default)
    if not isinstance(patterns, list) or not all(is_group_pattern(p) for p in patterns):
        raise bad_request(
            f'"{name}" must be a list of group names ({GROUP_RULE}) or prefixes ending in *',
            "bad_group",
        )
    return patterns


def token_request(body):
    """(sub, groups, ttl, publish, info) of a token to issue."""
    sub = sub_field(body)
    groups = patterns_field(body, "groups")
    publish = patterns_field(body, "publish", [])
    ttl = body.get("ttl", 3600)
    if type(ttl) is not int or not 1 <= ttl <= settings.GROUPCAST_TOKEN_MAX_TTL:
        raise bad_request(
            f'"ttl" must be an integer from 1 to {settings.GROUPCAST_TOKEN_MAX_TTL} seconds'
        )
    info = body.get("info")
    if info is not None and not info_valid(info):
        raise bad_request('"info" must be a JSON object of at most 1 kB (shown to other members)')
    return sub, groups, ttl, publish, info


def unsubscribe_request(body):
    return sub_field(body), group_field(body)


def job_request(body, now):
    """(groups, data, run_at, rate) for a bulk broadcast, within the job bounds (see
    settings.py): each value out of range is a 400 saying what range it must be in."""
    groups = body.get("groups")
    if (
        not isinstance(groups, list)
        or not 1 <= len(groups) <= MAX_JOB_GROUPS
        or not all(is_group_name(g) for g in groups)
    ):
        raise bad_request(
            f'"groups" must be a list of 1-{MAX_JOB_GROUPS} group names ({GROUP_RULE})',
            "bad_group",
        )
    groups = list(dict.fromkeys(groups))
    data = data_field(body)
    if "at" in body and "delay" in body:
        raise bad_request('give "at" or "delay", not both')
    run_at = now
    if "delay" in body:
        run_at = now + _delay(body["delay"])
    elif "at" in body:
        run_at = _at(body["at"], now)
    return groups, data, run_at, _rate(body.get("rate"), len(groups))


def out_of_range(reason, message):
    """A 400 for a value outside its bound; `reason` is what the refusal is counted as."""
    return ApiError(400, "bad_request", message, reason=reason)


def _delay(delay):
    longest = settings.GROUPCAST_JOB_MAX_DELAY
    if not _number(delay) or not 0 <= delay <= longest:
        raise out_of_range("delay", f'"delay" must be a number of seconds from 0 to {longest}')
    return delay


def _at(value, now):
    moment = _timestamp(value)
    longest, tolerance = settings.GROUPCAST_JOB_MAX_DELAY, settings.GROUPCAST_JOB_PAST_TOLERANCE
    if moment > now + longest:
        raise out_of_range("at", f'"at" must be within {longest} seconds from now')
    if moment < now - tolerance:
        # A time long gone is a mistake; and it would put the job ahead of every job due.
        raise out_of_range("at", f'"at" must not be more than {tolerance} seconds in the past')
    return max(moment, now)  # a moment ago (clock skew, a retried request): now, in turn


def _rate(rate, groups):
    """The job's publishes per second: absent means as fast as possible. Slow enough to
    outlast GROUPCAST_JOB_MAX_SECONDS would only hold a worker slot until the job is
    stopped unfinished, so the slowest rate accepted is the one that fits."""
    if rate is None:
        return None
    limit = settings.GROUPCAST_JOB_MAX_SECONDS
    slowest = groups / limit
    if not _number(rate) or not slowest <= rate <= MAX_JOB_RATE:
        raise out_of_range(
            "rate",
            f'"rate" must be from {slowest:.6g} to {MAX_JOB_RATE} publishes per second: '
            f"a job's {groups} groups must all be published within its time limit of {limit} s",
        )
    return rate


def _number(value):
    return type(value) in (int, float)


def _timestamp(value):
    if _number(value) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None:
                return moment.timestamp()
    raise out_of_range("at", '"at" must be a Unix time or an ISO 8601 time with a zone')
