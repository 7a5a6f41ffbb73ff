"""The sample study, and what the process backend answers for it: the reference every image
and backend must reproduce.

Compared as each output file's name and bytes, not as zip bytes: the output zip carries the
files' modification times, which differ from run to run.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.example import EXAMPLE_EXTRA
from tests.harness.repo import REPO
from tests.harness.servers import ServerFactory
from tests.harness.unavailable import require_module

require_module("pydicom", EXAMPLE_EXTRA)

from examples.dicom_stats.make_sample import build  # noqa: E402 (needs pydicom)

APP = REPO / "examples" / "dicom_stats" / "app.py"


def entries(archive: bytes) -> dict[str, bytes]:
    """Every file in a zip, by name (folders left out)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}


def post_study(url: str, study: bytes, timeout: float = 120) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/inference",
        content=study,
        headers={"Content-Type": "application/zip"},
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def sample_study(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The sample input `nox -s serve` writes (its UIDs are new each time, so made once)."""
    return build(tmp_path_factory.mktemp("sample") / "sample-input.zip").read_bytes()


@pytest.fixture(scope="session")
def reference_output(
    sample_study: bytes, tmp_path_factory: pytest.TempPathFactory, mis_server: ServerFactory
) -> dict[str, bytes]:
    """The example MAP's output for the sample study through MIS's process backend."""
    tmp = tmp_path_factory.mktemp("reference")
    config = {
        "server": {"payload_dir": str(tmp / "payload")},
        "map": {
            "command": [
                sys.executable,
                str(APP),
                "--input",
                "{input_path}",
                "--output",
                "{output_path}",
            ],
            "timeout_seconds": 60,
        },
    }
    with mis_server(tmp, config=config) as server:
        response = post_study(server.url, sample_study)
    assert response.status_code == 200, response.text
    output = entries(response.content)
    assert "summary.json" in output
    assert any(name.endswith(".png") for name in output)
    return output


@pytest.fixture(scope="session")
def study_folder(sample_study: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample study unpacked, readable by any user (for containers run by hand)."""
    folder = tmp_path_factory.mktemp("study")
    folder.chmod(0o755)
    with zipfile.ZipFile(io.BytesIO(sample_study)) as zf:
        zf.extractall(folder)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder
