"""Management commands: mint a token, publish, check configuration, Redis and a round trip."""

import subprocess
import sys

import pytest

from devstack import ROOT
from tests.integration.clients import Subscriber, api

pytestmark = pytest.mark.slow


def django_admin(stack, *args, **env):
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        env={**stack.env, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def test_token_command_mints_a_token_the_socket_accepts(stack):
    result = django_admin(stack, "groupcast_token", "ops", "alerts", "--ttl", "60")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    import asyncio

    async def subscribe():
        client = await Subscriber(stack.ws_url(0), token).connect()
        reply = await client.subscribe("alerts")
        await client.close()
        return reply

    assert asyncio.run(subscribe())["type"] == "subscribed"


def test_token_command_refuses_bad_group_names(stack):
    result = django_admin(stack, "groupcast_token", "ops", "bad group")
    assert result.returncode != 0 and "not group names: bad group" in result.stderr


def test_publish_command_prints_the_offset(stack):
    result = django_admin(stack, "groupcast_publish", "cli", '{"text": "hi"}')
    assert result.returncode == 0, result.stderr
    assert api(stack, "GET", "/api/v1/groups/cli")[1]["last_offset"] == result.stdout.strip()
    bad = django_admin(stack, "groupcast_publish", "cli", "{nope")
    assert bad.returncode != 0 and "data is not JSON" in bad.stderr


def test_check_command_checks_settings_redis_and_a_full_round_trip(stack):
    result = django_admin(
        stack, "groupcast_check", "--roundtrip", "--http-url", stack.http_url, "--ws-url", stack.ws_url(1)
    )
    assert result.returncode == 0, result.stderr
    assert "redis ok" in result.stdout and "roundtrip ok" in result.stdout


def test_check_command_fails_clearly_when_redis_is_unreachable(stack):
    result = django_admin(stack, "groupcast_check", REDIS_URL="redis://127.0.0.1:1/0")
    assert result.returncode != 0 and "Redis unreachable" in result.stderr
