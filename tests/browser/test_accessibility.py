"""axe-core on every state of the page: no serious or critical violation.

States: idle, the token prompt, the confirm step (and its warning), running with the MAP's
lines, busy for another tab, the MAP failed, the result (gallery, JSON tree and tables, a text
preview) and the image viewer.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import serious_violations
from tests.browser.pages import (
    PYTHON_FIRST,
    example_config,
    map_config,
    run_zip,
    sample_study,
    send_it,
)
from tests.harness.servers import ServerFactory

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]


def write_zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def test_the_result_and_the_viewer(
    tmp_path: Path, new_page: Any, axe: Path, mis_server: ServerFactory
) -> None:
    found: dict[str, list[str]] = {}
    with mis_server(tmp_path, config=example_config(tmp_path), env=PYTHON_FIRST) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_text("Idle: ready for a study").wait_for()
        found["idle"] = serious_violations(page, axe)
        page.get_by_label("Choose a zip file…").set_input_files(sample_study(tmp_path))
        page.locator("#confirm").wait_for()
        found["confirm"] = serious_violations(page, axe)
        send_it(page)
        page.locator("#outcome").get_by_text("The result is ready.").wait_for(timeout=120_000)
        for thumbnail in page.locator("#gallery .thumbnail").all():
            thumbnail.scroll_into_view_if_needed()
        page.locator("#gallery img[src]").first.wait_for()
        found["result"] = serious_violations(page, axe)
        page.locator("#gallery .thumbnail").first.click()
        page.locator("#viewer-image[src]").wait_for()
        found["viewer"] = serious_violations(page, axe)
    assert found == {state: [] for state in found}


def test_previews_of_text_and_json(
    tmp_path: Path, new_page: Any, axe: Path, mis_server: ServerFactory
) -> None:
    source = write_zip(
        tmp_path / "docs.zip",
        {
            "notes/readme.txt": "a text file\n" * 100,
            "report.json": json.dumps({"series": [{"a": 1, "b": "x"}], "nested": {"deep": [1, 2]}}),
        },
    )
    with mis_server(tmp_path) as server:
        page = new_page()
        run_zip(page, server.url, source)
        page.locator("#documents summary", has_text="readme.txt").click()
        page.locator(".text-preview").first.wait_for()
        page.locator(".records").first.wait_for()
        violations = serious_violations(page, axe)
    assert violations == []


def test_running_busy_and_failed(
    tmp_path: Path, new_page: Any, axe: Path, mis_server: ServerFactory
) -> None:
    found: dict[str, list[str]] = {}
    held = write_zip(
        tmp_path / "held.zip",
        {"_ticks.json": json.dumps({"lines": 3, "interval": 0, "hold": True})},
    )
    with mis_server(tmp_path, map_config("ticking_map.py"), env=PYTHON_FIRST) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_label("Choose a zip file…").set_input_files(held)
        send_it(page)
        page.locator("#live-log .line").nth(2).wait_for()
        found["running"] = serious_violations(page, axe)
        other = new_page()
        other.goto(server.url)
        other.get_by_text("Busy with another study").wait_for()
        found["busy"] = serious_violations(other, axe)
        other.get_by_label("Choose a zip file…").set_input_files(held)
        send_it(other)
        other.locator("#outcome").get_by_text("The service is busy").wait_for()
        found["refused as busy"] = serious_violations(other, axe)
        (tmp_path / "release").write_text("go")
        page.locator("#outcome").get_by_text("The result is ready.").wait_for()
    failing = write_zip(tmp_path / "fails.zip", {"_mode": "fail"})
    not_a_zip = tmp_path / "scan.zip"
    not_a_zip.write_bytes(b"not a zip")
    with mis_server(tmp_path) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_label("Choose a zip file…").set_input_files(failing)
        send_it(page)
        page.locator("#outcome").get_by_text("The application failed on this study.").wait_for()
        found["failed"] = serious_violations(page, axe)
        page.get_by_label("Choose a zip file…").set_input_files(not_a_zip)
        page.locator("#confirm-problem").get_by_text("could not read").wait_for()
        found["confirm with a warning"] = serious_violations(page, axe)
    assert found == {state: [] for state in found}


def test_the_token_prompt(
    tmp_path: Path, new_page: Any, axe: Path, mis_server: ServerFactory
) -> None:
    (tmp_path / "tokens").write_text("a-token-4b1e\n")
    auth = {"server": {"auth": {"tokens_file": str(tmp_path / "tokens")}}}
    with mis_server(tmp_path, auth) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_label("This service needs an access token").wait_for()
        violations = serious_violations(page, axe)
    assert violations == []
