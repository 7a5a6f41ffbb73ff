"""What a newcomer meets first, through a real server: /v1/status as the API page lists it,
the folders a process MAP really uses, an empty upload said plainly, and a client pointed at
nothing told how to point it elsewhere."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import httpx

from tests.e2e.server import raw_request, zip_post
from tests.harness.command import mis_command
from tests.harness.process import free_port
from tests.harness.repo import REPO
from tests.harness.servers import ServerFactory

API_PAGE = REPO / "docs" / "api.md"
WHERE = ["/bin/sh", "-c", 'echo "$0" > "$1/where.txt"', "{input_path}", "{output_path}"]
WHERE_MAP = {"map": {"command": WHERE, "timeout_seconds": 10}}  # says where its input was


def documented_status_fields() -> set[str]:
    section = API_PAGE.read_text().split("## The status", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([\w.]+)` \|", section, re.M))


def answered_fields(answer: dict[str, object]) -> set[str]:
    """Top-level keys, and `map.<key>` for the MAP's description."""
    fields = set()
    for key, value in answer.items():
        if isinstance(value, dict):
            fields |= {f"{key}.{inner}" for inner in value}
        else:
            fields.add(key)
    return fields


def one_file_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("note.txt", "hello\n")
    return buffer.getvalue()


def test_status_answers_the_fields_the_api_page_lists(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    with mis_server(tmp_path, WHERE_MAP) as server:
        answer = httpx.get(f"{server.url}/v1/status", timeout=5).json()
    assert documented_status_fields() == answered_fields(answer)


def test_a_process_map_s_folders_are_shown_as_it_uses_them(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    payload = tmp_path / "payload"
    with mis_server(tmp_path, WHERE_MAP) as server:
        shown = httpx.get(f"{server.url}/v1/status", timeout=5).json()["map"]
        response = httpx.post(
            f"{server.url}/v1/inference", files={"file": ("in.zip", one_file_zip())}, timeout=30
        )
        log = server.log_text()
    assert response.status_code == 200, response.text
    assert shown["input_path"] == f"{payload}/<job-id>/input"
    assert shown["output_path"] == f"{payload}/<job-id>/output"
    assert f"input_path={payload}/<job-id>/input output_path={payload}/<job-id>/output" in log
    assert "/var/monai" not in log  # not a container's folder: no process MAP sees it
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        used = zf.read("where.txt").decode().strip()
    pattern = re.escape(shown["input_path"]).replace(re.escape("<job-id>"), "[0-9a-f]{32}")
    assert re.fullmatch(pattern, used), used


def test_an_empty_body_is_said_to_be_empty(tmp_path: Path, mis_server: ServerFactory) -> None:
    with mis_server(tmp_path, WHERE_MAP) as server:
        raw = httpx.post(
            f"{server.url}/v1/inference",
            content=b"",
            headers={"Content-Type": "application/zip"},
            timeout=10,
        )
        form = httpx.post(f"{server.url}/v1/inference", files={"file": ("in.zip", b"")}, timeout=10)
        with raw_request(server, zip_post(b"")) as sock:
            sock.settimeout(10)
            head = b""
            while b"The request body is empty." not in head and (piece := sock.recv(65536)):
                head += piece  # the head and the body may come in two pieces
        server.wait_until_clean()
    assert raw.status_code == 400, raw.text
    assert raw.json()["error"]["code"] == "invalid_input"
    assert raw.json()["error"]["message"].startswith("The request body is empty.")
    assert "central directory" not in raw.text
    assert form.status_code == 400
    assert form.json()["error"]["message"].startswith("The 'file' part is empty")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"The request body is empty." in head


def test_a_client_that_reaches_nothing_is_told_about_url_and_mis_url(tmp_path: Path) -> None:
    study = tmp_path / "study.zip"
    study.write_bytes(one_file_zip())
    nothing = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = mis_command(
        "infer",
        study,
        "-o",
        tmp_path / "out.zip",
        env={"MIS_URL": nothing, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 7, result.stderr
    assert f"cannot reach {nothing}" in result.stderr
    assert "--url" in result.stderr
    assert "MIS_URL" in result.stderr
