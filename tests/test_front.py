"""The http role's front: its settings come from the environment (a bad one stops start-up
naming it), and every configuration they can render is one real nginx accepts."""

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from devstack import ROOT
from service.front import runner
from service.front.config import MAX_BODY_BYTES, front_config, render


def test_defaults_are_the_documented_ones():
    config = front_config({})
    assert config.bind == "0.0.0.0:8000" and config.upstream == "127.0.0.1:8080"
    assert (config.header_timeout, config.body_timeout, config.keepalive_timeout) == (5, 5, 15)
    assert (config.max_body_bytes, config.max_header_bytes, config.max_connections) == (65536, 8192, 1024)


def test_the_body_limit_is_the_one_django_reads(settings):
    assert front_config({}).max_body_bytes == MAX_BODY_BYTES["default"]
    assert settings.GROUPCAST_MAX_BODY_BYTES == front_config(os.environ).max_body_bytes


@pytest.mark.parametrize(
    "name, value, problem",
    [
        ("GROUPCAST_HTTP_HEADER_TIMEOUT", "0", "must be at least 1"),
        ("GROUPCAST_HTTP_BODY_TIMEOUT", "soon", "must be an integer"),
        ("GROUPCAST_HTTP_KEEPALIVE_TIMEOUT", "-1", "must be at least 0"),
        ("GROUPCAST_MAX_HEADER_BYTES", "100", "must be at least 1024"),
        ("GROUPCAST_MAX_HEADER_BYTES", "1000000", "must be at most 65536"),
        ("GROUPCAST_MAX_BODY_BYTES", "10", "must be at least 256"),
        ("GROUPCAST_HTTP_MAX_CONNECTIONS", "1", "must be at least 16"),
        ("GROUPCAST_FRONT_BIND", "8000", "must be host:port"),
        ("GROUPCAST_FRONT_BIND", "0.0.0.0:8000; evil", "must be host:port"),
        ("GROUPCAST_FRONT_UPSTREAM", "gunicorn", "must be host:port or unix:/path"),
        ("GROUPCAST_FRONT_DIR", "relative/dir", "must be an absolute path"),
    ],
)
def test_a_bad_value_is_refused_naming_its_variable(name, value, problem):
    with pytest.raises(ImproperlyConfigured) as error:
        front_config({name: value})
    assert f"{name}: {problem}" in str(error.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ImproperlyConfigured) as error:
        front_config({"GROUPCAST_HTTP_HEADER_TIMEOUT": "x", "GROUPCAST_MAX_HEADER_BYTES": "1"})
    assert "GROUPCAST_HTTP_HEADER_TIMEOUT" in str(error.value)
    assert "GROUPCAST_MAX_HEADER_BYTES" in str(error.value)


def test_the_process_exits_2_naming_the_variable(tmp_path):
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "GROUPCAST_FRONT_DIR": str(tmp_path),
           "GROUPCAST_HTTP_BODY_TIMEOUT": "forever"}
    done = subprocess.run([sys.executable, "-m", "service.front"], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2
    assert "GROUPCAST_HTTP_BODY_TIMEOUT: must be an integer" in done.stderr


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"GROUPCAST_HTTP_HEADER_TIMEOUT": "1", "GROUPCAST_HTTP_BODY_TIMEOUT": "300",
         "GROUPCAST_HTTP_KEEPALIVE_TIMEOUT": "0", "GROUPCAST_MAX_HEADER_BYTES": "1024",
         "GROUPCAST_MAX_BODY_BYTES": "256", "GROUPCAST_HTTP_MAX_CONNECTIONS": "16"},
        {"GROUPCAST_MAX_HEADER_BYTES": "65536", "GROUPCAST_MAX_BODY_BYTES": "10485760",
         "GROUPCAST_HTTP_MAX_CONNECTIONS": "65536", "GROUPCAST_FRONT_BIND": "[::1]:8000",
         "GROUPCAST_FRONT_UPSTREAM": "unix:/tmp/gunicorn.sock"},
    ],
    ids=["defaults", "smallest", "largest"],
)
def test_nginx_accepts_the_rendered_configuration(tmp_path, environ):
    config = front_config({**environ, "GROUPCAST_FRONT_DIR": str(tmp_path)})
    assert "{{" not in render(config)
    ok, report = runner.check(config)
    assert ok, report


def test_a_connection_limit_above_the_open_file_limit_stops_start_up(monkeypatch):
    monkeypatch.setattr(runner.resource, "getrlimit", lambda kind: (1024, 1024))
    with pytest.raises(ImproperlyConfigured, match="GROUPCAST_HTTP_MAX_CONNECTIONS: 4096 connections need"):
        runner.raise_file_limit(front_config({"GROUPCAST_HTTP_MAX_CONNECTIONS": "4096"}))
