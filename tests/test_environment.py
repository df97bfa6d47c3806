"""Settings come from the environment; a bad or missing one stops start-up naming it."""

import os
import subprocess
import sys

import pytest

from service.environment import Environment

BASE = {
    "DJANGO_SETTINGS_MODULE": "service.settings",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "DJANGO_SECRET_KEY": "s" * 40,
    "GROUPCAST_API_KEYS": "k" * 20,
    "GROUPCAST_JWT_SECRET": "j" * 40,
}

# The Standard Webhooks specification's example secret (24 bytes): not one in use anywhere.
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def environment(**changes):
    """This process's environment without the service's settings, then BASE, then
    `changes` (None removes a variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GROUPCAST_", "DJANGO_", "REDIS_", "GUNICORN_"))}
    env.update(BASE)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def load_settings(**changes):
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); print('loaded')"],
        env=environment(**changes), capture_output=True, text=True, timeout=60,
    )


def check_gunicorn_config(**changes):
    """gunicorn reads its settings before Django starts: service/api/gunicorn.conf.py."""
    return subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "service/api/gunicorn.conf.py", "--check-config"],
        env=environment(**changes), capture_output=True, text=True, timeout=60,
    )


def test_complete_environment_loads():
    result = load_settings()
    assert result.returncode == 0, result.stderr
    assert "loaded" in result.stdout


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("REDIS_URL", None, "REDIS_URL: required but not set"),
        ("REDIS_URL", "http://x", "REDIS_URL: must be a URL starting with one of redis://"),
        ("REDIS_URL", "redis+cluster://10.0.0.1", "REDIS_URL: redis+cluster:// seed '10.0.0.1' must be host:port"),
        ("REDIS_URL", "redis+sentinel://10.0.0.1:26379", "REDIS_URL: redis+sentinel:// URL needs the master name"),
        ("DJANGO_SECRET_KEY", None, "DJANGO_SECRET_KEY: required"),
        ("DJANGO_SECRET_KEY", "short", "DJANGO_SECRET_KEY: must be at least 32 characters"),
        ("GROUPCAST_API_KEYS", None, "GROUPCAST_API_KEYS: required"),
        ("GROUPCAST_API_KEYS", "k" * 20 + ",tiny", "GROUPCAST_API_KEYS: every item must be at least 16"),
        ("GROUPCAST_JWT_SECRET", None, "GROUPCAST_JWT_SECRET: required"),
        ("GROUPCAST_MAX_FRAME_BYTES", "lots", "GROUPCAST_MAX_FRAME_BYTES: must be an integer, got 'lots'"),
        ("GROUPCAST_MAX_SUBSCRIPTIONS", "0", "GROUPCAST_MAX_SUBSCRIPTIONS: must be at least 1"),
        ("GROUPCAST_CLIENT_RATE", "fast", "GROUPCAST_CLIENT_RATE: must be a number"),
        ("GROUPCAST_LOG_LEVEL", "LOUD", "GROUPCAST_LOG_LEVEL: must be one of"),
        ("GROUPCAST_WEBHOOK_URL", "ftp://x", "GROUPCAST_WEBHOOK_URL: must be a URL"),
        ("GROUPCAST_REDIS_PING_MISSES", "1", "GROUPCAST_REDIS_PING_MISSES: must be at least 2"),
        ("GROUPCAST_METRICS_TIMEOUT", "forever", "GROUPCAST_METRICS_TIMEOUT: must be a number"),
        ("GROUPCAST_METRICS_MAX_CONNECTIONS", "0", "GROUPCAST_METRICS_MAX_CONNECTIONS: must be at least 1"),
        ("GROUPCAST_JOB_MAX_SECONDS", "0", "GROUPCAST_JOB_MAX_SECONDS: must be at least 1"),
        ("GROUPCAST_JOB_MAX_QUEUED", "many", "GROUPCAST_JOB_MAX_QUEUED: must be an integer"),
        ("GROUPCAST_JOB_QUEUE_TTL", "5", "GROUPCAST_JOB_QUEUE_TTL: must be at least 60"),
        ("GROUPCAST_WEBHOOK_URL", "https://hooks.example.com/", "GROUPCAST_WEBHOOK_SECRET: required with GROUPCAST_WEBHOOK_URL"),
        ("GROUPCAST_SUBSCRIBE_PROXY_URL", "http://app/ok", "GROUPCAST_WEBHOOK_SECRET: required with GROUPCAST_WEBHOOK_URL or GROUPCAST_SUBSCRIBE_PROXY_URL"),
        ("GROUPCAST_SUBSCRIBE_PROXY_URL", "app/ok", "GROUPCAST_SUBSCRIBE_PROXY_URL: must be a URL"),
        ("GROUPCAST_SUBSCRIBE_PROXY_TIMEOUT", "0", "GROUPCAST_SUBSCRIBE_PROXY_TIMEOUT: must be at least 0.1"),
        ("GROUPCAST_SUBSCRIBE_PROXY_CONCURRENCY", "none", "GROUPCAST_SUBSCRIBE_PROXY_CONCURRENCY: must be an integer"),
        # too short (16 bytes), not base64
        ("GROUPCAST_WEBHOOK_SECRET", "whsec_c2hvcnQtc2hvcnQtc2hvcnQ=", "GROUPCAST_WEBHOOK_SECRET: item 1 must be base64 of 24 to 64 bytes"),
        ("GROUPCAST_WEBHOOK_SECRET", WEBHOOK_SECRET + ",whsec_not base64!", "GROUPCAST_WEBHOOK_SECRET: item 2 must be base64"),
    ],
)
def test_a_bad_setting_stops_start_up_naming_the_variable(name, value, message):
    result = load_settings(**{name: value})
    assert result.returncode != 0
    assert message in result.stderr
    # secrets never appear in the error
    assert BASE["DJANGO_SECRET_KEY"] not in result.stderr
    assert BASE["GROUPCAST_API_KEYS"] not in result.stderr
    assert "c2hvcnQ" not in result.stderr and WEBHOOK_SECRET not in result.stderr


@pytest.mark.parametrize("name, value, message", [
    ("GUNICORN_WORKERS", "two", "GUNICORN_WORKERS: must be an integer, got 'two'"),
    ("GUNICORN_WORKERS", "0", "GUNICORN_WORKERS: must be at least 1, got 0"),
    ("GROUPCAST_LOG_FORMAT", "xml", "GROUPCAST_LOG_FORMAT: must be one of text, json"),
])
def test_a_bad_gunicorn_setting_stops_the_http_role_naming_it(name, value, message):
    bad = check_gunicorn_config(**{name: value})
    assert bad.returncode != 0 and message in bad.stderr, bad.stderr


def test_the_gunicorn_settings_load():
    good = check_gunicorn_config()
    assert good.returncode == 0, good.stderr


def test_webhook_secrets_in_the_specifications_form_or_bare_base64_load():
    result = load_settings(
        GROUPCAST_WEBHOOK_URL="https://hooks.example.com/groupcast",
        GROUPCAST_SUBSCRIBE_PROXY_URL="http://app:8000/groupcast/subscribe",
        GROUPCAST_WEBHOOK_SECRET=WEBHOOK_SECRET + "," + WEBHOOK_SECRET.removeprefix("whsec_"),
    )
    assert result.returncode == 0, result.stderr


def test_every_problem_is_reported_at_once():
    result = load_settings(REDIS_URL=None, GROUPCAST_API_KEYS=None, GROUPCAST_MAX_BODY_BYTES="-5")
    assert result.returncode != 0
    for name in ("REDIS_URL", "GROUPCAST_API_KEYS", "GROUPCAST_MAX_BODY_BYTES"):
        assert f"{name}:" in result.stderr


def test_environment_lists_and_booleans():
    env = Environment({"L": " a, b ,,c ", "B": "yes", "X": "maybe"})
    assert env.list("L") == ["a", "b", "c"]
    assert env.bool("B", False) is True
    assert env.bool("X", False) is False
    assert env.problems == ["X: must be true or false, got 'maybe'"]
