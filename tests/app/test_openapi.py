"""The OpenAPI description is complete: every route, method and error the code has."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.routing import Route

from mis_app.bootstrap import create_app
from mis_app.errors import STATUS_BY_CODE
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


def readme_statuses() -> dict[str, int]:
    """The README's error table: code → HTTP status, as users read it."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    return {
        code: int(status) for status, code in re.findall(r"^\| (\d{3}) \| `(\w+)` \|", readme, re.M)
    }


def test_the_readme_error_table_is_what_the_server_answers() -> None:
    documented = readme_statuses()
    assert documented == {code: STATUS_BY_CODE[code] for code in documented}
    assert {"headers_too_large", "http_version_not_supported"} <= set(documented)


def test_every_error_the_core_can_raise_is_documented_for_inference() -> None:
    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.MisError)
    }
    documented = readme_statuses()
    assert codes <= set(documented)
    responses = openapi(protect_metrics=True)["paths"]["/v1/inference"]["post"]["responses"]
    for code in codes:
        assert f"`{code}`" in responses[str(documented[code])]["description"], code
    assert "Retry-After" in responses["500"]["headers"]
    assert "Retry-After" not in responses["503"].get("headers", {})


def test_metrics_are_documented_as_open_when_not_protected() -> None:
    metrics = openapi(protect_metrics=False)["paths"]["/metrics"]["get"]
    assert metrics["security"] == []
    assert "401" not in metrics["responses"]
