"""schemathesis drives the live server from its own /openapi.json (bounded examples).

Every answer must have a documented status and content type and match its schema; a 5xx must
be one of the documented error codes, never an unexpected failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.harness.servers import ServerFactory

pytestmark = pytest.mark.slow  # see pyproject.toml: more than a few seconds

DOCUMENTED_5XX = {"busy", "timeout", "map_failed", "backend_unavailable", "insufficient_storage"}


@pytest.fixture(scope="module")
def live_schema(
    tmp_path_factory: pytest.TempPathFactory, mis_server: ServerFactory
) -> Iterator[schemathesis.BaseSchema]:
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    with mis_server(tmp) as server:
        yield schemathesis.openapi.from_url(f"{server.url}/openapi.json")


def test_the_live_server_keeps_to_its_description(live_schema: schemathesis.BaseSchema) -> None:
    checks = [
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ]
    operations = [result.ok() for result in live_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/inference", "/upload/", "/healthz", "/readyz"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
        def conforms(case: schemathesis.Case) -> None:
            response = case.call(timeout=30)
            case.validate_response(response, checks=checks)
            if response.status_code >= 500:
                assert response.json()["error"]["code"] in DOCUMENTED_5XX

        conforms()
