"""The OpenAPI description is complete: every route, method and error the code has."""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Route

from mis_app.bootstrap import create_app
from mis_app.openapi import openapi
from mis_app.settings import Settings
from mis_core import errors


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


# The README's error table, written out here rather than read from the code's own tables.
README_STATUSES = {
    "invalid_input": 400,
    "unauthorized": 401,
    "request_timeout": 408,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "busy": 500,
    "timeout": 500,
    "map_failed": 500,
    "internal_error": 500,
    "backend_unavailable": 503,
    "insufficient_storage": 507,
}


def test_every_error_the_core_can_raise_is_documented_for_inference() -> None:
    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.MisError)
    }
    assert codes == set(README_STATUSES)
    responses = openapi(protect_metrics=True)["paths"]["/v1/inference"]["post"]["responses"]
    for code, status in README_STATUSES.items():
        assert f"`{code}`" in responses[str(status)]["description"], (code, status)
    assert "Retry-After" in responses["500"]["headers"]
    assert "Retry-After" not in responses["503"].get("headers", {})


def test_metrics_are_documented_as_open_when_not_protected() -> None:
    metrics = openapi(protect_metrics=False)["paths"]["/metrics"]["get"]
    assert metrics["security"] == []
    assert "401" not in metrics["responses"]
