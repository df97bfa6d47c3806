"""Management commands: mint a token, publish, check configuration, Redis and a round trip;
through their one entry point, `python -m service.manage` (`make manage`, and the image's
docker-entrypoint.sh)."""

import base64
import json
import os
import subprocess
import sys

import pytest

from devstack import ROOT
from tests.integration.clients import Subscriber, api

pytestmark = pytest.mark.slow


def django_admin(stack, *args, **env):
    return subprocess.run(
        [sys.executable, "-m", "service.manage", *args],
        env={**stack.env, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )


def bare_env(**extra):
    """A clone's shell: no groupcast setting, no DJANGO_SETTINGS_MODULE, no PYTHONPATH."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("GROUPCAST_", "DJANGO_")) and k not in ("REDIS_URL", "PYTHONPATH")}
    return {**keep, **extra}


def manage(*args, env=None, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "service.manage", *args], env=env or bare_env(),
                          cwd=cwd, capture_output=True, text=True, timeout=60)


def test_help_needs_no_settings():
    listing = manage("--help")
    assert listing.returncode == 0, listing.stderr
    for command in ("groupcast_token", "groupcast_publish", "groupcast_check", "runworker"):
        assert command in listing.stdout
    assert "only Django core commands are listed" not in listing.stdout + listing.stderr
    for command in ("groupcast_token", "groupcast_publish", "groupcast_check"):
        done = manage(command, "--help")
        assert done.returncode == 0 and f"usage: python -m service.manage {command}" in done.stdout, done.stderr
    assert "--ttl TTL" in manage("groupcast_token", "--help").stdout


def test_a_command_without_settings_names_every_missing_variable():
    done = manage("groupcast_token", "user-1", "news")
    assert done.returncode == 2
    for name in ("DJANGO_SECRET_KEY", "REDIS_URL", "GROUPCAST_API_KEYS", "GROUPCAST_JWT_SECRET"):
        assert f"{name}: required but not set" in done.stderr
    assert "Traceback" not in done.stderr


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_token_ttl_is_capped_by_the_token_max_ttl(stack):
    capped = django_admin(stack, "groupcast_token", "ops", "alerts", GROUPCAST_TOKEN_MAX_TTL="600")
    assert capped.returncode == 0, capped.stderr
    token = claims(capped.stdout.strip())
    assert token["exp"] - token["iat"] == 600  # the default, 3600, is over the cap
    refused = django_admin(stack, "groupcast_token", "ops", "alerts", "--ttl", "3600", GROUPCAST_TOKEN_MAX_TTL="600")
    assert refused.returncode != 0 and "--ttl must be from 1 to 600 seconds (GROUPCAST_TOKEN_MAX_TTL)" in refused.stderr
    default = claims(django_admin(stack, "groupcast_token", "ops", "alerts").stdout.strip())
    assert default["exp"] - default["iat"] == 3600


def test_make_manage_reaches_the_make_run_stack(stack, tmp_path):
    """`make manage` takes REDIS_URL and the secrets from the running stack's .run/ files."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "stack.env").write_text(f"REDIS_URL={stack.redis_url}\n")
    (run / "secrets.env").write_text("".join(
        f"{name}={stack.env[name]}\n" for name in ("DJANGO_SECRET_KEY", "GROUPCAST_API_KEYS", "GROUPCAST_JWT_SECRET")))
    from devstack.manage import environment

    env = environment(bare_env(), run=run)
    done = manage("groupcast_publish", "from-make", '{"n": 1}', env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert api(stack, "GET", "/api/v1/groups/from-make")[1]["last_offset"] == done.stdout.strip()
    # what the environment sets wins over the files
    env = environment(bare_env(REDIS_URL="redis://127.0.0.1:1/0"), run=run)
    assert env["REDIS_URL"] == "redis://127.0.0.1:1/0"


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


def test_the_documented_entry_points_answer_help_without_settings():
    # make manage, from a clone
    done = subprocess.run(["make", "-s", "manage", "ARGS=groupcast_token --help"], cwd=ROOT,
                          env=bare_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "usage: python -m service.manage groupcast_token" in done.stdout, done.stderr
    # the image's entry point (run here with the clone's interpreter where the image has /opt/venv)
    env = bare_env(PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}", PYTHONPATH=str(ROOT))
    for args in (["groupcast_check", "--help"], ["--help"]):
        done = subprocess.run(["sh", str(ROOT / "docker-entrypoint.sh"), *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "groupcast_check" in done.stdout
    assert "http-front" in done.stdout  # --help also lists the roles
