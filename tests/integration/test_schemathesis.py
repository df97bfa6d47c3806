"""The HTTP API against its OpenAPI description (service/api/openapi.json), on a real gunicorn.

schemathesis generates requests from the description, valid ones and invalid ones, sends
them with the API key to a live http process, and checks that no answer is a server
error and that every status, media type, header and body is the documented one. A second
test follows the description's links (publish -> group, job -> its status), so answers
that need state, such as a real job's status, are checked too. The xfail at the end is a
transport bug only a real server shows.

Bounded for `make test` (about 400 requests); a longer, random run:

    GROUPCAST_SCHEMATHESIS_EXAMPLES=500 .venv/bin/python -m pytest tests/integration/test_schemathesis.py
"""

import http.client
import json
import os
import re
from pathlib import Path

import jsonschema
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devstack import Stack
from tests.integration.conftest import running

SCHEMA = schemathesis.openapi.from_path(
    Path(__file__).resolve().parents[2] / "service" / "api" / "openapi.json"
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
LONG_RUN = int(os.environ.get("GROUPCAST_SCHEMATHESIS_EXAMPLES", "0"))
MAX_EXAMPLES = LONG_RUN or 25
TIMEOUT = max(90, 4 * MAX_EXAMPLES)
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=not LONG_RUN,
    database=None,
    suppress_health_check=list(HealthCheck),
)
# Routes that are not part of the HTTP API the description covers.
NOT_API = {"/", "/static/{name}", "/demo/token", "/api/v1/openapi.json"}


def test_the_description_is_valid_openapi_3_1():
    SCHEMA.validate()
    for schema in _schemas(SCHEMA.raw_schema):
        jsonschema.Draft202012Validator.check_schema(schema)


def test_every_route_is_described():
    from service.urls import urlpatterns

    routes = {"/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", str(p.pattern)) for p in urlpatterns}
    assert routes - NOT_API == set(SCHEMA.raw_schema["paths"])


def _schemas(node):
    """Every Schema Object in the description."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema":
                yield value
            elif key == "schemas":
                yield from value.values()
            yield from _schemas(value)
    elif isinstance(node, list):
        for item in node:
            yield from _schemas(item)


@pytest.fixture(scope="module")
def http_stack():
    """Redis, gunicorn, one socket process and one worker (so jobs run), on loopback."""
    yield from running(Stack())


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT)
@SCHEMA.parametrize()
@FUZZ
def test_api_conforms_to_its_openapi_description(case, http_stack):
    case.call_and_validate(
        base_url=http_stack.http_url,
        headers={"Authorization": f"Bearer {http_stack.api_key}"},
        checks=CHECKS,
        timeout=10,
    )


@pytest.mark.slow
@pytest.mark.timeout(TIMEOUT)
def test_linked_calls_conform_too(http_stack):
    """Sequences that follow the description's links, so stateful answers are checked."""

    class Workflow(SCHEMA.as_state_machine()):
        def get_call_kwargs(self, case):
            return {
                "base_url": http_stack.http_url,
                "headers": {"Authorization": f"Bearer {http_stack.api_key}"},
                "timeout": 10,
            }

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Workflow.run(
        settings=settings(FUZZ, max_examples=max(5, MAX_EXAMPLES // 3), stateful_step_count=4)
    )


@pytest.mark.slow
def test_a_chunked_body_is_read_or_refused_for_what_it_is(http_stack):
    connection = http.client.HTTPConnection("127.0.0.1", http_stack.http_port, timeout=10)
    connection.request(
        "POST", "/api/v1/publish", body=iter([b'{"group": "news", ', b'"data": 1}']),
        headers={"Authorization": f"Bearer {http_stack.api_key}", "Content-Type": "application/json"},
        encode_chunked=True,
    )
    response = connection.getresponse()
    status, answer = response.status, json.loads(response.read())
    connection.close()
    assert status == 200 or (status == 411 and answer["error"]["code"] != "bad_json"), (status, answer)
