"""One error catalogue: the docs (API page, client page), the server, the OpenAPI text, the client and the page agree
with `mis_core.error_catalogue.CATALOGUE`, and each code is written in one product module only."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from mis_app.bootstrap import create_app
from mis_app.settings import Settings
from mis_core import errors
from mis_core.error_catalogue import BY_CODE, CATALOGUE, Exit, collect
from tests.harness.repo import REPO

PRODUCT = ("mis_core", "mis_adapters", "mis_app")
# the same words in another vocabulary: /v1/status's state, a MAP manifest's key
# the same words with other meanings: /v1/status's state, a MAP manifest's key, the reason
# label of a retried Kubernetes API call
OTHER_MEANINGS = {
    ("busy", "mis_app/openapi_schema.py"),
    ("busy", "mis_app/static/app.js"),
    ("timeout", "mis_adapters/docker/manifest.py"),
    ("timeout", "mis_adapters/kubernetes/retry.py"),
    ("timeout", "mis_adapters/kubernetes/wire.py"),
}


DOCS = REPO / "docs"


def docs_error_table() -> dict[str, tuple[int, str]]:
    """The API page's error table: code → (HTTP status, when), as users read it."""
    page = (DOCS / "api.md").read_text()
    rows = re.findall(r"^\| (\d{3}) \| `(\w+)` \| (.*) \|$", page, re.M)
    assert len({code for _, code, _ in rows}) == len(rows), "a code is in the table twice"
    return {code: (int(status), when) for status, code, when in rows}


def test_the_docs_error_table_is_the_catalogue() -> None:
    assert docs_error_table() == {row.code: (row.status, row.when) for row in CATALOGUE}


def test_the_client_page_s_exit_codes_are_the_catalogue_s() -> None:
    page = (DOCS / "client.md").read_text()
    section = page.split("## Exit codes", 1)[1]
    rows = re.findall(r"^\| (\d) \| (.*) \|$", section, re.M)
    assert {Exit(int(number)) for number, _ in rows} == set(Exit), "every exit code, once"
    listed = {
        Exit(int(number)): {int(status) for status in re.findall(r"\b\d{3}\b", meaning)}
        for number, meaning in rows
    }
    listed = {code: statuses for code, statuses in listed.items() if statuses}
    assert listed, section
    for exit_code, statuses in listed.items():
        assert statuses == {row.status for row in CATALOGUE if row.exit == exit_code}, exit_code


def test_every_error_class_has_one_row_and_every_row_says_what_to_do() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.MisError)
    ]
    assert [error for error in classes if "row" not in vars(error)] == [], "a row of its own"
    assert {error.row for error in classes} == set(CATALOGUE)
    assert all(error.code == error.row.code for error in classes)
    assert len(BY_CODE) == len(CATALOGUE)
    for row in CATALOGUE:
        assert row.when, row.code
        assert row.title.endswith("."), row.code
        assert row.advice.endswith("."), row.code


def test_the_catalogue_is_ordered_by_status_with_the_catch_all_last_of_its_status() -> None:
    statuses = [row.status for row in CATALOGUE]
    assert statuses == sorted(statuses)
    same_status = [row for row in CATALOGUE if row.status == errors.MisError.row.status]
    assert same_status[-1] == errors.MisError.row
    assert same_status[0] == errors.Busy.row  # then in errors.py's order


def test_a_subclass_without_a_row_of_its_own_is_its_parent_s_code() -> None:
    class Specific(errors.BackendUnavailable):
        pass

    assert Specific("gone").code == errors.BackendUnavailable.code == "backend_unavailable"
    assert BY_CODE[Specific.code] is Specific.row is errors.BackendUnavailable.row
    assert len(CATALOGUE) == len(collect())  # defined here, it adds no row


def test_each_code_is_written_in_one_product_module() -> None:
    found: dict[str, set[str]] = {row.code: set() for row in CATALOGUE}
    for top in PRODUCT:
        for path in sorted((REPO / top).rglob("*")):
            if path.suffix not in {".py", ".js", ".html"}:
                continue
            text = path.read_text()
            relative = path.relative_to(REPO).as_posix()
            for code in found:
                if (
                    re.search(rf"[\"'`]{code}[\"'`]", text)
                    and (code, relative) not in OTHER_MEANINGS
                ):
                    found[code].add(relative)
    assert found == {code: {"mis_core/errors.py"} for code in found}


@pytest.mark.anyio
async def test_routing_answers_with_the_catalogue_s_codes(tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {"server": {"payload_dir": str(tmp_path)}, "map": {"command": ["true"]}}
    )
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://mis") as client:
        missing = await client.get("/no/such/path")
        wrong_method = await client.get("/v1/inference")
        spec = (await client.get("/openapi.json")).json()
    routing = {row.status: row.code for row in CATALOGUE if row.routing}
    assert routing == {404: "not_found", 405: "method_not_allowed"}
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == routing[404]
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == routing[405]
    # the page's advice, as the page reads it
    assert spec["x-errors"] == {
        row.code: {
            "status": row.status,
            "title": row.title,
            "advice": row.advice,
            "map_ran": row.map_ran,
        }
        for row in CATALOGUE
    }
