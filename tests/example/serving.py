"""The example MAP served by MIS: its configuration as the example ships it, and what is left."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.harness.repo import REPO
from tests.harness.servers import Server

EXAMPLE_CONFIG = REPO / "examples" / "dicom_stats" / "mis.yaml"


def example_config(tmp_path: Path) -> dict[str, Any]:
    """The example's mis.yaml as is, but for the payload folder and the interpreter."""
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    config["server"]["payload_dir"] = str(tmp_path / "payload")
    config["map"]["command"][0] = sys.executable  # the interpreter that has the example's extra
    return config


def leftovers_after(server: Server) -> list[str]:
    """What is left of the request once its clean-up (which may follow the answer) is done."""
    with contextlib.suppress(AssertionError):  # the test that asserts it says what is left
        server.wait_until_clean(10)
    return server.leftovers()
