"""What the page's browser tests share: servers with the MAPs they need, and page steps."""

from __future__ import annotations

import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

from tests.harness.repo import REPO

EXAMPLE_CONFIG = REPO / "examples" / "dicom_stats" / "mis.yaml"
# "python3" (not a path) in the commands, so screenshots show no machine paths: the server's
# PATH starts with this Python's folder, which has the example MAP's libraries.
PYTHON_FIRST = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def example_config(tmp_path: Path) -> dict[str, Any]:
    """examples/dicom_stats/mis.yaml, with the test's payload folder."""
    config: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config["server"]["payload_dir"] = str(tmp_path / "payload")
    return config


def map_config(script: str, *args: str, timeout: int = 60) -> dict[str, Any]:
    """A test MAP from tests/maps/, run with "python3": overrides for `mis_server`."""
    return {
        "map": {"command": ["python3", f"tests/maps/{script}", *args], "timeout_seconds": timeout}
    }


def sample_study(tmp_path: Path) -> Path:
    from examples.dicom_stats.make_sample import build

    return build(tmp_path / "sample-study.zip")


def send_it(page: Any) -> None:
    """Confirm the step that shows what will be sent."""
    page.get_by_role("button", name=re.compile(r"^Send ")).click()


def run_zip(page: Any, url: str, source: Path) -> None:
    """Open the page, choose `source`, send it, and wait for the result."""
    page.goto(url)
    page.get_by_text("Idle: ready for a study").wait_for()
    page.get_by_label("Choose a zip file…").set_input_files(source)
    send_it(page)
    page.locator("#outcome").get_by_text("The result is ready.").wait_for(timeout=120_000)


def download_result(page: Any) -> zipfile.ZipFile:
    """Click the download link; the zip it gives."""
    with page.expect_download() as info:
        page.get_by_role("link", name="Download the result").click()
    return zipfile.ZipFile(info.value.path())


def flat_record_lists(value: Any, key: str = "records") -> list[tuple[str, list[dict[str, Any]]]]:
    """Every list of flat records in a JSON document, with the key it is under."""
    found: list[tuple[str, list[dict[str, Any]]]] = []
    if isinstance(value, list):
        plain = (str, int, float, bool, type(None))
        if value and all(
            isinstance(item, dict) and all(isinstance(v, plain) for v in item.values())
            for item in value
        ):
            return [(key, value)]
        for index, item in enumerate(value):
            found += flat_record_lists(item, str(index))
    elif isinstance(value, dict):
        for name, item in value.items():
            found += flat_record_lists(item, name)
    return found


def shown_as(value: Any) -> str:
    """How a plain JSON value reads in the page's tables."""
    if isinstance(value, str):
        return value
    return json.dumps(value)
