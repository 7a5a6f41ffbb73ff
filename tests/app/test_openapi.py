"""The OpenAPI description is complete: every route, method and error the code has."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Route

from mis_app.bootstrap import create_app
from mis_app.openapi import openapi
from mis_app.settings import Settings
from mis_core import error_catalogue


def test_every_route_is_described_and_nothing_else(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"server": {"payload_dir": str(tmp_path)}, "map": {"command": ["true"]}}
    )
    app = create_app(settings)
    served = {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    spec = openapi(protect_metrics=True)
    described = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert served == described


def test_every_error_the_core_can_raise_is_documented_for_inference() -> None:
    responses = openapi(protect_metrics=True)["paths"]["/v1/inference"]["post"]["responses"]
    for row in error_catalogue.CATALOGUE:
        if not row.routing:
            described = responses[str(row.status)]["description"]
            assert f"`{row.code}`: {row.when}" in described, row.code
    assert "Retry-After" in responses["500"]["headers"]
    assert "Retry-After" not in responses["503"].get("headers", {})


def test_metrics_are_documented_as_open_when_not_protected() -> None:
    metrics = openapi(protect_metrics=False)["paths"]["/metrics"]["get"]
    assert metrics["security"] == []
    assert "401" not in metrics["responses"]
