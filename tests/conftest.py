"""Test fixtures: a real Redis (REDIS_URL, or a private redis-server for the run), Django
configured from the environment like every role, and a fresh key prefix per test so
tests never see each other's groups."""

import asyncio
import os
import secrets
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from devstack import Redis

_redis = None
_workdir = None


def pytest_configure(config):
    global _redis, _workdir
    config.addinivalue_line("markers", "slow: starts the real topology or a browser")
    _workdir = Path(tempfile.mkdtemp(prefix="groupcast-tests-"))
    url = os.environ.get("REDIS_URL")
    if not url:
        _redis = Redis(_workdir / "redis")
        _redis.start()
        url = _redis.url
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "service.settings",
            "REDIS_URL": url,
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(48),
            "GROUPCAST_API_KEYS": "test-key-0123456789abcdef,test-key-second-0123456789",
            "GROUPCAST_JWT_SECRET": secrets.token_urlsafe(48) + "," + secrets.token_urlsafe(48),
            "GROUPCAST_ALLOWED_ORIGINS": "https://app.example.com",
        }
    )
    import django

    django.setup()


def pytest_unconfigure(config):
    from service.layer.listener import stop_all

    stop_all(wait=True)  # layers the tests left open stop before their Redis does
    if _redis is not None:
        _redis.stop()
    if _workdir is not None:
        shutil.rmtree(_workdir, ignore_errors=True)


@pytest.fixture
def settings():
    """Django settings; whatever a test changes is restored after it."""
    from django.conf import settings as django_settings
    from django.test.utils import override_settings

    with override_settings():
        yield django_settings


@pytest.fixture(scope="module")
def apps():
    """The http role's ASGI application (the publish fast path) and Django's behind it."""
    import service.api.app

    return {"fast": service.api.app.application, "django": service.api.app.django_application}


@pytest.fixture
def redis_url():
    return os.environ["REDIS_URL"]


@pytest.fixture
def private_redis():
    """A Redis of the test's own, for tests that stop and restart it."""
    server = Redis(Path(tempfile.mkdtemp(prefix="groupcast-redis-")))
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def prefix(settings):
    """A key prefix of the test's own."""
    settings.GROUPCAST_REDIS_PREFIX = f"t{uuid.uuid4().hex[:10]}"
    return settings.GROUPCAST_REDIS_PREFIX


@pytest.fixture
def sync_redis():
    from service.storage.clients import redis_sync

    return redis_sync()


@pytest.fixture
async def layer(settings, prefix):
    """A GroupcastChannelLayer of the test's own, installed as the default layer."""
    from channels.layers import channel_layers

    from service.layer import GroupcastChannelLayer

    created = GroupcastChannelLayer(redis_url=settings.REDIS_URL, prefix=prefix)
    previous = channel_layers.backends.get("default")
    channel_layers.backends["default"] = created
    yield created
    await created.flush()
    await created.close_pools()
    if previous is None:
        channel_layers.backends.pop("default", None)
    else:
        channel_layers.backends["default"] = previous


@pytest.fixture
async def hub(layer):
    """The socket hub of the test's event loop, stopped after the test."""
    from service.socket.hub import close_current_hub, current_hub

    yield current_hub()
    await close_current_hub()


async def eventually(predicate, timeout=5.0, what="condition"):
    """Await until `predicate()` (sync or async) is true, or fail after `timeout`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
