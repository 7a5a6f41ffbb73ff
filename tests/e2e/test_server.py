"""The real server on 127.0.0.1, driven by curl and httpx, with the scripted test MAP."""

from __future__ import annotations

import io
import json
import os
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import raw_request, zip_post
from tests.harness.servers import Server, ServerFactory
from tests.harness.unavailable import require_tool
from tests.harness.wait import wait_until
from tests.processes import is_alive
from tests.zips import make_zip

INPUT = {
    "series/IM1.dcm": os.urandom(20_000),
    "series/IM2.dcm": b"\x00" * 20_000,
    "nested/a/b.txt": b"x",
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def server(workdir: Path, mis_server: ServerFactory) -> Iterator[Server]:
    with mis_server(workdir, {"server": {"max_upload_bytes": 5_000_000}}) as running:
        yield running


@pytest.fixture(autouse=True)
def nothing_left_behind(server: Server, workdir: Path) -> Iterator[None]:
    for name in ("pids", "started", "release"):
        (workdir / name).unlink(missing_ok=True)
    yield
    wait_until(lambda: server.leftovers() == [], 5, "the payload folder to be empty")
    assert httpx.get(f"{server.url}/v1/status").json()["state"] == "idle"


def zip_with(tmp_path: Path, files: dict[str, bytes], mode: str | None = None) -> Path:
    content = dict(files)
    if mode:
        content["_mode"] = mode.encode()
    return make_zip(tmp_path / "input.zip", content)


def read_zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    return body["error"]


def test_round_trip_returns_exactly_what_the_map_wrote(server: Server, tmp_path: Path) -> None:
    archive = zip_with(tmp_path, INPUT)
    with open(archive, "rb") as f:
        response = httpx.post(
            f"{server.url}/v1/inference", files={"file": ("in.zip", f)}, timeout=30
        )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == 'attachment; filename="output.zip"'
    outputs = read_zip(response.content)
    assert set(outputs) == {*INPUT, "_env.json", "_argv.json"}
    assert all(outputs[name] == data for name, data in INPUT.items())
    env = json.loads(outputs["_env.json"])
    request_id = response.headers["x-request-id"]
    assert env["MONAI_JOBID"] == request_id  # a generated id is already 32 hex characters
    assert env["MONAI_INPUTPATH"] == str(server.payload_dir / request_id / "input")


def curl_post(url: str, out: Path, *options: str) -> str:
    """POST with the real curl; the HTTP status it reports."""
    result = subprocess.run(
        [require_tool("curl"), "-sS", "-o", str(out), "-w", "%{http_code}", *options, url],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def test_upload_route_with_curl_form(server: Server, tmp_path: Path) -> None:
    archive = zip_with(tmp_path, INPUT)
    out = tmp_path / "out.zip"
    assert curl_post(f"{server.url}/upload/", out, "-F", f"file=@{archive}") == "200"
    assert {k: v for k, v in read_zip(out.read_bytes()).items() if k in INPUT} == INPUT


def test_raw_zip_body_with_curl(server: Server, tmp_path: Path) -> None:
    archive = zip_with(tmp_path, INPUT)
    out = tmp_path / "out.zip"
    status = curl_post(
        f"{server.url}/v1/inference",
        out,
        "-H",
        "Content-Type: application/zip",
        "-H",
        "X-Request-ID: study-0042",
        "--data-binary",
        f"@{archive}",
    )
    assert status == "200"
    outputs = read_zip(out.read_bytes())
    assert outputs["series/IM1.dcm"] == INPUT["series/IM1.dcm"]
    # the workspace is named by MIS's own job id, never by the client's words
    environment = json.loads(outputs["_env.json"])
    assert "study-0042" not in environment["MONAI_INPUTPATH"]
    assert Path(environment["MONAI_INPUTPATH"]).parent.name == environment["MONAI_JOBID"]


def test_request_id_is_echoed_when_well_formed_and_replaced_otherwise(server: Server) -> None:
    given = httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "abc_DEF-123"})
    assert given.headers["x-request-id"] == "abc_DEF-123"
    bad = httpx.get(f"{server.url}/healthz", headers={"X-Request-ID": "no spaces/or slashes"})
    assert bad.headers["x-request-id"] != "no spaces/or slashes"
    assert len(bad.headers["x-request-id"]) == 32


def test_second_request_is_busy_at_once_and_the_first_still_succeeds(
    server: Server, tmp_path: Path, workdir: Path
) -> None:
    first_zip = zip_with(tmp_path, INPUT, mode="wait")
    results: dict[str, httpx.Response] = {}

    def first() -> None:
        results["first"] = httpx.post(
            f"{server.url}/v1/inference",
            content=first_zip.read_bytes(),
            headers={"Content-Type": "application/zip"},
            timeout=30,
        )

    thread = threading.Thread(target=first)
    thread.start()
    wait_until((workdir / "started").exists, 10, "the first MAP to start")

    second = httpx.post(
        f"{server.url}/v1/inference",
        files={"file": ("in.zip", b"PK\x05\x06" + bytes(18))},
        timeout=30,
    )
    # answered at once: the first MAP waits for the release, which is only written now
    assert thread.is_alive()
    assert httpx.get(f"{server.url}/v1/status").json()["in_flight"] == 1
    (workdir / "release").write_text("go")
    thread.join(30)

    assert second.status_code == 500
    error = error_of(second)
    assert error["code"] == "busy"
    assert "Another inference request is being fulfilled" in error["message"]
    # it says how to wait: the header, and the client option that honours it
    assert "Retry-After" in error["message"]
    assert "mis infer --wait" in error["message"]
    assert second.headers["retry-after"] == "5"
    assert results["first"].status_code == 200
    assert read_zip(results["first"].content)["series/IM1.dcm"] == INPUT["series/IM1.dcm"]

    third = httpx.post(
        f"{server.url}/v1/inference",
        files={"file": ("in.zip", zip_with(tmp_path, INPUT).read_bytes())},
        timeout=30,
    )
    assert third.status_code == 200


def test_timeout_stops_the_map_and_its_child(server: Server, tmp_path: Path, workdir: Path) -> None:
    archive = zip_with(tmp_path, INPUT, mode="hang")
    started = time.monotonic()
    response = httpx.post(
        f"{server.url}/v1/inference", files={"file": ("in.zip", archive.read_bytes())}, timeout=30
    )
    elapsed = time.monotonic() - started

    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "timeout"
    assert "did not finish within 3 seconds" in error["message"]
    assert elapsed >= 3  # it was given its whole timeout
    for pid in (int(p) for p in (workdir / "pids").read_text().split()):
        assert not is_alive(pid)


def test_map_failure_gives_its_exit_code_and_log(server: Server, tmp_path: Path) -> None:
    archive = zip_with(tmp_path, INPUT, mode="fail")
    response = httpx.post(
        f"{server.url}/v1/inference", files={"file": ("in.zip", archive.read_bytes())}, timeout=30
    )

    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "map_failed"
    assert "exited with code 3" in error["message"]
    assert "error: the model could not be loaded" in error["message"]
    request_id = response.headers["x-request-id"]
    assert any(
        request_id in line and "error: the model could not be loaded" in line
        for line in server.log_text().splitlines()
    ), "the MAP's log line should be in MIS's log, tagged with the request id"


@pytest.mark.parametrize(
    ("make_body", "status", "code"),
    [
        (lambda p: ({"file": ("in.zip", b"not a zip at all")}, None), 400, "invalid_input"),
        (
            lambda p: (
                {"file": ("in.zip", make_zip(p / "t.zip", {"../escape.txt": b"x"}).read_bytes())},
                None,
            ),
            400,
            "invalid_input",
        ),
        (lambda p: ({"other": ("in.zip", b"PK")}, None), 400, "invalid_input"),
        (lambda p: (None, ("text/plain", b"hello")), 415, "unsupported_media_type"),
        (lambda p: (None, ("application/zip", os.urandom(6_000_000))), 413, "payload_too_large"),
    ],
    ids=["not-a-zip", "traversal", "no-file-part", "wrong-media-type", "too-large"],
)
def test_bad_input_gets_a_4xx_and_never_reaches_the_map(
    server: Server, tmp_path: Path, workdir: Path, make_body, status: int, code: str
) -> None:
    files, raw = make_body(tmp_path)
    if files is not None:
        response = httpx.post(f"{server.url}/v1/inference", files=files, timeout=30)
    else:
        media_type, body = raw
        try:
            response = httpx.post(
                f"{server.url}/v1/inference",
                content=body,
                headers={"Content-Type": media_type},
                timeout=30,
            )
        except httpx.TransportError:
            pytest.fail("the server should answer even when it stops reading a too-large upload")
    assert response.status_code == status
    assert error_of(response)["code"] == code
    request_id = response.headers["x-request-id"]
    map_lines = [
        line for line in server.log_text().splitlines() if request_id in line and "| map |" in line
    ]
    assert map_lines == []


def test_client_disconnect_while_the_map_runs_frees_the_slot(
    server: Server, tmp_path: Path, workdir: Path
) -> None:
    body = zip_with(tmp_path, INPUT, mode="wait").read_bytes()
    with raw_request(server, zip_post(body)):
        wait_until((workdir / "started").exists, 10, "the MAP to start")
    # the socket is closed: MIS must stop the MAP, clean up and be idle again within a second
    wait_until(
        lambda: httpx.get(f"{server.url}/v1/status").json()["state"] == "idle",
        1,
        "the slot within a second",
    )
    wait_until(lambda: server.leftovers() == [], 1, "the workspace to go")
    assert "client disconnected" in server.log_text()


def test_client_disconnect_mid_upload_frees_the_slot(server: Server) -> None:
    with raw_request(server, zip_post(bytes(100_000), content_length=4_000_000)):
        wait_until(
            lambda: httpx.get(f"{server.url}/v1/status").json()["state"] == "busy", 5, "admission"
        )
    wait_until(
        lambda: httpx.get(f"{server.url}/v1/status").json()["state"] == "idle",
        1,
        "the slot within a second",
    )


def test_health_readiness_and_unknown_routes(server: Server) -> None:
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/readyz").json() == {"status": "ready"}
    missing = httpx.get(f"{server.url}/nope")
    assert missing.status_code == 404
    assert error_of(missing)["code"] == "not_found"
    wrong_method = httpx.get(f"{server.url}/v1/inference")
    assert wrong_method.status_code == 405


def test_startup_logged_the_map_configuration(server: Server) -> None:
    assert "serving MAP with the process backend" in server.log_text()
    assert "timeout=3s" in server.log_text()
