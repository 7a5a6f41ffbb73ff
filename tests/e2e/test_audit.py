"""The audit file of a real MIS (process backend): one record per request whatever its
outcome, with the hashes of what went in and out, the token's name and nothing of the study;
`mis audit verify` on that file, whole and tampered with."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import raw_request
from tests.harness.command import mis_command
from tests.harness.servers import Server, ServerFactory
from tests.harness.wait import wait_until
from tests.zips import make_zip

TOKEN = "s3cr3t-audit-token-value"
UNNAMED = "another-token-without-name"
LIMIT = 8_000_000
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit")


@pytest.fixture(scope="module")
def server(workdir: Path, mis_server: ServerFactory) -> Iterator[Server]:
    tokens = workdir / "tokens"
    tokens.write_text(f"# who may call\nradiology: {TOKEN}\n{UNNAMED}\n")
    overrides = {
        "server": {
            "audit_file": str(workdir / "audit.jsonl"),
            "max_upload_bytes": LIMIT,
            "auth": {"tokens_file": str(tokens)},
            "trusted_proxies": ["127.0.0.1", "10.0.0.0/8"],
        }
    }
    with mis_server(workdir, overrides) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh(workdir: Path) -> None:
    for name in ("started", "release"):
        (workdir / name).unlink(missing_ok=True)


def lines(workdir: Path) -> list[bytes]:
    path = workdir / "audit.jsonl"
    return path.read_bytes().splitlines() if path.exists() else []


def record(workdir: Path, request_id: str) -> dict[str, Any]:
    """The one record of `request_id`, once it is written."""
    found: list[dict[str, Any]] = []

    def written() -> bool:
        found[:] = [r for r in map(json.loads, lines(workdir)) if r["request_id"] == request_id]
        return bool(found)

    wait_until(written, 15, f"the audit record of {request_id}")
    assert len(found) == 1, found
    return found[0]


def post(server: Server, body: bytes, request_id: str, token: str | None = TOKEN, **headers: str):
    sent = {"x-request-id": request_id, "content-type": "application/zip", **headers}
    if token:
        sent["authorization"] = f"Bearer {token}"
    return httpx.post(f"{server.url}/v1/inference", content=body, headers=sent, timeout=30)


def a_zip(tmp_path: Path, files: dict[str, bytes], mode: str | None = None) -> bytes:
    content = {**files, **({"_mode": mode.encode()} if mode else {})}
    return make_zip(tmp_path / "in.zip", content).read_bytes()


def test_a_success_records_the_hashes_of_what_went_in_and_out(
    server: Server, workdir: Path, tmp_path: Path
) -> None:
    files = {"series/IM1.dcm": os.urandom(3_000_000), "series/IM2.dcm": b"\x02" * 10}
    body = a_zip(tmp_path, files)  # over a MiB each way: hashed in several batches
    response = post(server, body, "ok-1", **{"x-forwarded-for": "203.0.113.7, 10.1.2.3"})
    assert response.status_code == 200
    got = record(workdir, "ok-1")
    assert got["status"] == 200
    assert got["code"] == "ok"
    assert got["input_sha256"] == hashlib.sha256(body).hexdigest()
    assert got["input_bytes"] == len(body)
    assert got["input_entries"] == 2
    assert got["output_sha256"] == hashlib.sha256(response.content).hexdigest()
    assert got["output_bytes"] == len(response.content)
    assert got["output_entries"] == 4  # the two files, and the scripted MAP's two records
    assert got["job_id"] != "ok-1"
    assert len(got["job_id"]) == 32
    assert got["client"] == "203.0.113.7"  # the last hop the trusted proxies did not add
    assert got["token_name"] == "radiology"
    assert got["map"]["command"][1].endswith("scripted_map.py")
    assert got["resources"] == {"cpu": "1", "memory": "8Gi", "gpu": 0}
    assert set(got["stage_seconds"]) == {"receive", "extract", "job", "pack"}
    assert got["time_started"] <= got["time_ended"]


def test_refusals_and_failures_each_leave_one_record(
    server: Server, workdir: Path, tmp_path: Path
) -> None:
    assert post(server, b"not a zip at all", "bad-zip").status_code == 400
    assert post(server, b"x" * (LIMIT + 1), "too-big").status_code == 413
    assert post(server, b"x", "no-token", token=None).status_code == 401
    assert post(server, a_zip(tmp_path, {"a": b"1"}), "unnamed", token=UNNAMED).status_code == 200
    assert post(server, a_zip(tmp_path, {"a": b"1"}, "fail"), "failed").status_code == 500
    assert post(server, a_zip(tmp_path, {"a": b"1"}, "hang"), "hung").status_code == 500
    expected = {
        "bad-zip": (400, "invalid_input"),
        "too-big": (413, "payload_too_large"),
        "no-token": (401, "unauthorized"),
        "unnamed": (200, "ok"),
        "failed": (500, "map_failed"),
        "hung": (500, "timeout"),
    }
    for request_id, (status, code) in expected.items():
        got = record(workdir, request_id)
        assert (got["status"], got["code"]) == (status, code), got
    assert (
        record(workdir, "bad-zip")["input_sha256"]
        == hashlib.sha256(b"not a zip at all").hexdigest()
    )
    assert record(workdir, "no-token")["token_name"] is None
    assert record(workdir, "unnamed")["token_name"] == "token-3"  # its line in the file
    assert record(workdir, "failed")["output_sha256"] is None


def test_busy_and_a_client_gone_mid_upload_are_recorded(
    server: Server, workdir: Path, tmp_path: Path
) -> None:
    waiting = a_zip(tmp_path, {"a": b"1"}, "wait")
    first: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: first.append(post(server, waiting, "holder")))
    thread.start()
    wait_until(lambda: (workdir / "started").exists(), 15, "the MAP to start")
    busy = post(server, waiting, "refused")
    (workdir / "release").write_text("go")
    thread.join(30)
    assert busy.status_code == 500
    assert first[0].status_code == 200
    assert (record(workdir, "refused")["status"], record(workdir, "refused")["code"]) == (
        500,
        "busy",
    )

    head = (
        "POST /v1/inference HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/zip\r\n"
        f"X-Request-ID: gone\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Length: 1000000\r\n\r\n"
    ).encode()
    sock = raw_request(server, head + b"PK" + b"\0" * 50_000)
    busy = lambda: httpx.get(f"{server.url}/v1/status", headers=AUTH).json()["state"] == "busy"  # noqa: E731
    wait_until(busy, 10, "the upload to be admitted")
    sock.close()
    got = record(workdir, "gone")
    assert got["status"] is None
    assert got["code"] == "client_disconnected"
    assert got["input_sha256"] is None  # the upload never ended: no hash of a part
    assert got["input_bytes"] <= 50_002


def test_nothing_of_the_study_or_the_token_reaches_the_audit_file(
    server: Server, workdir: Path, tmp_path: Path
) -> None:
    body = a_zip(
        tmp_path, {"DOE^JOHN/1.dcm": b"PatientName=DOE^JOHN", "DOE^JOHN/MRN-4711.txt": b"x"}
    )
    assert post(server, body, "patient").status_code == 200
    record(workdir, "patient")
    text = b"\n".join(lines(workdir))
    for secret in (b"DOE", b"JOHN", b"MRN-4711", b"1.dcm", TOKEN.encode(), UNNAMED.encode()):
        assert secret not in text


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return mis_command("audit", "verify", path)


def test_verify_passes_on_the_real_file_and_pinpoints_an_edit_and_a_removal(
    server: Server, workdir: Path, tmp_path: Path
) -> None:
    for n in range(4):
        post(server, b"not a zip", f"chain-{n}")
    record(workdir, "chain-3")
    original = lines(workdir)
    assert len(original) >= 4
    whole = verify(workdir / "audit.jsonl")
    assert whole.returncode == 0, whole.stdout
    assert f"{len(original)} record(s) is whole" in whole.stdout

    edited = list(original)
    edited[1] = edited[1].replace(b'"status":400', b'"status":200')
    assert edited[1] != original[1]
    (tmp_path / "edited").write_bytes(b"\n".join(edited) + b"\n")
    broken = verify(tmp_path / "edited")
    assert broken.returncode == 1
    assert "edited:2: was edited" in broken.stdout, broken.stdout

    removed = original[:2] + original[3:]
    (tmp_path / "removed").write_bytes(b"\n".join(removed) + b"\n")
    gap = verify(tmp_path / "removed")
    assert gap.returncode == 1
    assert "removed:3: 1 record(s) removed between line 2 and this line" in gap.stdout, gap.stdout


def test_a_request_stopped_by_a_shutdown_is_recorded(
    mis_server: ServerFactory, tmp_path: Path
) -> None:
    audit = tmp_path / "stop-audit.jsonl"
    overrides = {"server": {"audit_file": str(audit), "shutdown_grace_seconds": 0}}
    answers: list[httpx.Response] = []
    with mis_server(tmp_path, overrides) as stopping:
        body = a_zip(tmp_path, {"a": b"1"}, "wait")
        thread = threading.Thread(target=lambda: answers.append(post(stopping, body, "cut", None)))
        thread.start()
        wait_until(lambda: (tmp_path / "started").exists(), 15, "the MAP to start")
        stopping.process.send_signal(signal.SIGTERM)
        thread.join(30)
        stopping.process.wait(30)
    assert answers[0].status_code == 503
    [line] = audit.read_bytes().splitlines()
    got = json.loads(line)
    assert (got["request_id"], got["status"], got["code"]) == ("cut", 503, "stopped")
    assert got["input_sha256"] == hashlib.sha256(body).hexdigest()


def test_a_form_upload_records_the_hash_of_the_zip_not_of_the_form(
    server: Server, workdir: Path, tmp_path: Path
) -> None:
    body = a_zip(tmp_path, {"a.txt": b"hello"})
    response = httpx.post(
        f"{server.url}/upload/",
        files={"file": ("study.zip", body)},
        headers={"x-request-id": "form", **AUTH},
        timeout=30,
    )
    assert response.status_code == 200
    got = record(workdir, "form")
    assert got["path"] == "/upload/"
    assert got["input_sha256"] == hashlib.sha256(body).hexdigest()
    assert got["input_bytes"] == len(body)
    assert b"study.zip" not in b"\n".join(lines(workdir))  # the form's file name neither
