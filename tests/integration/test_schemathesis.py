"""The HTTP API against its OpenAPI description, on a real gunicorn.

schemathesis generates requests from service/api/openapi.json (valid ones and invalid
ones), sends them with the API key to a live http process, and checks that nothing is a
server error, every status is documented, and every answer matches its documented schema,
media type and headers.
"""

import os
from pathlib import Path

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

from service.devstack import Stack

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
# A longer run: GROUPCAST_SCHEMATHESIS_EXAMPLES=500 pytest tests/integration/test_schemathesis.py
MAX_EXAMPLES = int(os.environ.get("GROUPCAST_SCHEMATHESIS_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def http_stack():
    """Redis, gunicorn, one socket process and one worker (so jobs run), on loopback."""
    topology = Stack()
    try:
        topology.start()
    except Exception:
        for name in topology.processes:
            print(f"--- {name}\n{topology.log(name)}")
        topology.stop()
        raise
    yield topology
    topology.stop()


@pytest.mark.slow
@pytest.mark.timeout(90)
@SCHEMA.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_openapi_description(case, http_stack):
    case.call_and_validate(
        base_url=http_stack.http_url,
        headers={"Authorization": f"Bearer {http_stack.api_key}"},
        checks=CHECKS,
        timeout=10,
    )


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_linked_calls_conform_too(http_stack):
    """Sequences that follow the description's links (publish -> group, job -> its status),
    so a real job's status and a published group's info are checked against their schemas."""

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
        settings=settings(
            max_examples=max(5, MAX_EXAMPLES // 3),
            stateful_step_count=4,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
