"""The API page (docs/api.md) lists the routes /openapi.json describes, no more, no fewer."""

from __future__ import annotations

import re
from pathlib import Path

from mis_app.openapi import openapi

PAGE = Path(__file__).parents[2] / "docs" / "api.md"


def documented_routes() -> set[tuple[str, str]]:
    """(path, method) for every `METHOD /path` in the first column of the routes table."""
    section = PAGE.read_text().split("## Routes", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", section, re.M)
    return {
        (path, method.lower())
        for cell in first_cells
        for method, path in re.findall(r"`(GET|POST|PUT|DELETE) (/[^`]*)`", cell)
    }


def test_the_routes_table_is_the_openapi_document() -> None:
    described = {
        (path, method)
        for path, item in openapi(protect_metrics=True)["paths"].items()
        for method in item
    }
    assert documented_routes() == described


def test_the_status_fields_are_the_openapi_schema_s() -> None:
    """The page's /v1/status table against the schema (tests/e2e holds it to a real answer)."""
    section = PAGE.read_text().split("## The status", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([\w.]+)` \|", section, re.M))
    get = openapi(protect_metrics=True)["paths"]["/v1/status"]["get"]
    schema = get["responses"]["200"]["content"]["application/json"]["schema"]
    properties = schema["properties"]
    described = {name for name in properties if name != "map"}
    described |= {f"map.{inner}" for inner in properties["map"]["properties"]}
    assert documented == described
