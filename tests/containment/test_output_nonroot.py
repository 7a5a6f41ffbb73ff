"""Hostile MAP outputs through the real server, MIS running as the unprivileged user: each
answer is a whole, valid zip or a JSON error, never a cut body and never a byte from outside
the workspace; the workspace is gone afterwards, whatever the MAP left in it."""

from __future__ import annotations

import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.servers import Server, ServerFactory
from tests.harness.unavailable import require_tool
from tests.harness.wait import wait_until
from tests.nonroot import NonRoot, maps_dir
from tests.zips import make_zip

pytestmark = pytest.mark.slow  # see pyproject.toml: more than a few seconds

SECRET = b"SECRET-host-file-content-" * 40


@pytest.fixture(scope="module")
def work(nonroot: NonRoot) -> Path:
    return nonroot.workdir("output")


@pytest.fixture(scope="module")
def server(nonroot: NonRoot, work: Path, mis_server: ServerFactory) -> Iterator[Server]:
    secret = work / "host"
    secret.mkdir()
    (secret / "passwd").write_bytes(SECRET)  # readable by MIS's user: it must still not leak
    config: dict[str, Any] = {
        "server": {"payload_dir": str(work / "payload")},
        "map": {
            "command": [nonroot.python, str(maps_dir(nonroot) / "output_map.py")],
            "timeout_seconds": 300,
            "env": {"MIS_TEST_SECRET": str(secret)},
        },
        "process": {"kill_grace_seconds": 1},
    }
    with mis_server(work, config=config, nonroot=nonroot) as running:
        yield running


@pytest.fixture(autouse=True)
def nothing_left_behind(server: Server) -> Iterator[None]:
    yield
    # deleting 65,600 files takes 15-100 s on a loaded disk here
    wait_until(lambda: server.leftovers() == [], 300, "the payload folder to be empty")


def run_mode(server: Server, tmp_path: Path, mode: str) -> httpx.Response:
    """POST an input that steers the MAP; the whole response (a cut body raises here)."""
    body = make_zip(tmp_path / "in.zip", {"_mode": mode.encode()}).read_bytes()
    response = httpx.post(
        f"{server.url}/v1/inference",
        content=body,
        headers={"Content-Type": "application/zip"},
        timeout=600,
    )
    assert SECRET[:20] not in response.content
    return response


def whole_zip(response: httpx.Response, tmp_path: Path) -> list[str]:
    assert response.status_code == 200, response.text
    archive = tmp_path / "out.zip"
    archive.write_bytes(response.content)
    checked = subprocess.run([require_tool("unzip"), "-tq", str(archive)], capture_output=True)
    # unzip answers 1 ("zipfile is empty") for a valid zip without entries
    assert checked.returncode == 0 or b"zipfile is empty" in checked.stdout, checked.stdout
    with zipfile.ZipFile(archive) as zf:
        assert zf.testzip() is None
        return zf.namelist()


def map_failed(response: httpx.Response) -> str:
    assert response.status_code == 500, response.text
    error = response.json()["error"]
    assert error["code"] == "map_failed"
    return str(error["message"])


def test_an_output_folder_replaced_by_a_link_is_map_failed(server: Server, tmp_path: Path) -> None:
    response = run_mode(server, tmp_path, "link-output")
    if "output folder replaced by a link" in server.log_text():
        assert "output folder cannot be sent whole: it is a symbolic link" in map_failed(response)
    else:  # a sandbox kept the folder in place: then it is an ordinary, empty answer
        assert whole_zip(response, tmp_path) == []


def test_links_inside_the_output_are_left_out(server: Server, tmp_path: Path) -> None:
    names = whole_zip(run_mode(server, tmp_path, "link-inside"), tmp_path)
    assert names == ["result.txt", "series/"]  # its only entry was a link


def test_a_name_that_is_not_utf8_is_map_failed_naming_the_rule(
    server: Server, tmp_path: Path
) -> None:
    message = map_failed(run_mode(server, tmp_path, "non-utf8"))
    assert "not valid UTF-8" in message


def test_a_file_mis_cannot_read_is_map_failed_before_any_byte(
    server: Server, tmp_path: Path
) -> None:
    message = map_failed(run_mode(server, tmp_path, "unreadable"))
    assert "a file in it cannot be read" in message
    assert "locked.bin" not in message
    assert "locked.bin" not in server.log_text()


@pytest.mark.timeout(600)
def test_more_than_65535_files_come_back_whole(server: Server, tmp_path: Path) -> None:
    names = whole_zip(run_mode(server, tmp_path, "many 65600"), tmp_path)
    assert len(names) == 65_600
    assert names[-1] == "series/065599"


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_more_than_4_gib_comes_back_whole(server: Server, tmp_path: Path) -> None:
    response = run_mode(server, tmp_path, "sparse 4300000000")
    assert whole_zip(response, tmp_path) == ["summary.json", "volume.raw"]
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        assert zf.getinfo("volume.raw").file_size == 4_300_000_000


def test_a_read_only_tree_is_sent_and_deleted(server: Server, tmp_path: Path) -> None:
    names = whole_zip(run_mode(server, tmp_path, "readonly 10"), tmp_path)
    assert "result.txt" in names
    assert "model/" * 9 + "model/weights" in names


def test_a_read_only_tree_deeper_than_python_recurses_is_refused_and_deleted(
    server: Server, tmp_path: Path
) -> None:
    assert "nested more than 128 deep" in map_failed(run_mode(server, tmp_path, "readonly 3000"))
