"""`mis infer` against a mocked server (respx) and against the real one."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import httpx
import pytest
import respx

from mis_app.client import (
    InferOptions,
    infer,
)
from mis_core.error_catalogue import Exit
from tests.harness.command import mis_command
from tests.harness.servers import ServerFactory
from tests.zips import make_zip

URL = "http://mis.test"


def error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    body = {"error": {"code": code, "message": message, "request_id": "r1"}}
    return httpx.Response(status, json=body, headers=headers)


@pytest.fixture
def study(tmp_path: Path) -> Path:
    folder = tmp_path / "study"
    (folder / "CT" / "série 1").mkdir(parents=True)
    (folder / "CT" / "série 1" / "IM1.dcm").write_bytes(b"\x01" * 3000)
    (folder / "CT" / "IM2.dcm").write_bytes(b"\x02" * 3000)
    (folder / "notes.txt").write_text("hello")
    return folder


@pytest.mark.parametrize(
    ("response", "exit_code", "shown"),
    [
        (
            error(400, "invalid_input", "The zip archive has an unsafe entry name"),
            Exit.BAD_INPUT,
            "400 invalid_input",
        ),
        (error(413, "payload_too_large", "too big"), Exit.BAD_INPUT, "413 payload_too_large"),
        (
            error(415, "unsupported_media_type", "send a zip"),
            Exit.BAD_INPUT,
            "415 unsupported_media_type",
        ),
        (
            error(408, "request_timeout", "the upload stalled"),
            Exit.BAD_INPUT,
            "408 request_timeout",
        ),
        (
            error(401, "unauthorized", "needs a token"),
            Exit.UNAUTHORIZED,
            "401 unauthorized: needs a token",
        ),
        (
            error(500, "busy", "Another inference request", **{"Retry-After": "0"}),
            Exit.BUSY,
            "500 busy",
        ),
        (
            error(500, "timeout", "did not finish within 50 seconds"),
            Exit.TIMEOUT,
            "did not finish within 50 seconds",
        ),
        (
            error(500, "map_failed", "exited with code 3\nTraceback: boom"),
            Exit.MAP_FAILED,
            "Traceback: boom",
        ),
        (
            error(503, "backend_unavailable", "API server cannot be reached"),
            Exit.UNREACHABLE,
            "503 backend_unavailable",
        ),
        (
            error(507, "insufficient_storage", "ran out of space"),
            Exit.FAILED,
            "507 insufficient_storage",
        ),
        (httpx.Response(502, text="<html>bad gateway</html>"), Exit.FAILED, "502 http_502"),
    ],
    ids=lambda value: value if isinstance(value, int | str) else "",
)
def test_every_answer_maps_to_its_exit_code_and_message(
    tmp_path: Path, study: Path, response: httpx.Response, exit_code: int, shown: str
) -> None:
    err = io.StringIO()
    with respx.mock(base_url=URL) as mock:
        mock.post("/v1/inference").mock(return_value=response)
        code = infer(InferOptions(source=study, output=tmp_path / "out.zip", url=URL), err)
    assert code == exit_code
    assert shown in err.getvalue()
    assert not (tmp_path / "out.zip").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".mis-partial")] == []


def test_an_unreachable_server_is_its_own_exit_code(tmp_path: Path, study: Path) -> None:
    err = io.StringIO()
    with respx.mock(base_url=URL) as mock:
        mock.post("/v1/inference").mock(side_effect=httpx.ConnectError("connection refused"))
        code = infer(InferOptions(source=study, output=tmp_path / "out.zip", url=URL), err)
    assert code == Exit.UNREACHABLE
    assert "cannot reach http://mis.test" in err.getvalue()
    assert "--url" in err.getvalue()
    assert "MIS_URL" in err.getvalue()


def test_a_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    err = io.StringIO()
    assert (
        infer(InferOptions(source=tmp_path / "nope", output=tmp_path / "o.zip", url=URL), err)
        == Exit.USAGE
    )


def test_busy_retries_stop_at_the_limit(tmp_path: Path, study: Path) -> None:
    err = io.StringIO()
    with respx.mock(base_url=URL) as mock:
        route = mock.post("/v1/inference").mock(
            return_value=error(500, "busy", "Another inference request", **{"Retry-After": "0"})
        )
        code = infer(
            InferOptions(source=study, output=tmp_path / "o.zip", url=URL, wait=True, retries=3),
            err,
        )
    assert code == Exit.BUSY
    assert route.call_count == 4  # the first try and three retries
    assert "retry 3/3" in err.getvalue()


def test_busy_then_success_with_wait(tmp_path: Path, study: Path) -> None:
    result = make_zip(tmp_path / "result.zip", {"summary.json": b"{}"}).read_bytes()
    with respx.mock(base_url=URL) as mock:
        mock.post("/v1/inference").side_effect = [
            error(500, "busy", "Another inference request", **{"Retry-After": "0"}),
            httpx.Response(200, content=result, headers={"Content-Type": "application/zip"}),
        ]
        code = infer(
            InferOptions(source=study, output=tmp_path / "o.zip", url=URL, wait=True), io.StringIO()
        )
    assert code == Exit.OK
    assert (tmp_path / "o.zip").read_bytes() == result


def test_a_folder_is_zipped_with_paths_relative_to_it(tmp_path: Path, study: Path) -> None:
    sent: dict[str, bytes] = {}

    def capture(request: httpx.Request) -> httpx.Response:
        with zipfile.ZipFile(io.BytesIO(request.read())) as zf:
            sent.update({name: zf.read(name) for name in zf.namelist()})
        assert request.headers["content-type"] == "application/zip"
        assert request.headers["authorization"] == "Bearer t0ken"
        return httpx.Response(200, content=make_zip(tmp_path / "r.zip", {}).read_bytes())

    with respx.mock(base_url=URL) as mock:
        mock.post("/v1/inference").mock(side_effect=capture)
        code = infer(
            InferOptions(source=study, output=tmp_path / "o.zip", url=URL, token="t0ken"),
            io.StringIO(),
        )
    assert code == Exit.OK
    assert sent == {
        "CT/série 1/IM1.dcm": b"\x01" * 3000,
        "CT/IM2.dcm": b"\x02" * 3000,
        "notes.txt": b"hello",
    }


@pytest.mark.slow
def test_folder_in_extracted_result_out_against_the_real_server(
    tmp_path: Path, study: Path, mis_server: ServerFactory
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("secret\n")
    with mis_server(tmp_path, {"server": {"auth": {"tokens_file": str(tokens)}}}) as server:
        result = mis_command(
            "infer", study, "--url", server.url, "--token-file", tokens,
            "--extract", tmp_path / "result",
        )  # fmt: skip
    assert result.returncode == Exit.OK, result.stderr
    out = tmp_path / "result"
    for path in study.rglob("*"):
        if path.is_file():
            assert (out / path.relative_to(study)).read_bytes() == path.read_bytes()
    assert (out / "_env.json").exists()  # what the MAP wrote beside the copies
    assert "file(s) in" in result.stderr


def result_response(tmp_path: Path, files: dict[str, bytes]) -> httpx.Response:
    archive = make_zip(tmp_path / "served.zip", files).read_bytes()
    return httpx.Response(200, content=archive, headers={"Content-Type": "application/zip"})


def test_extract_refuses_a_folder_holding_files_before_uploading(
    tmp_path: Path, study: Path
) -> None:
    target = tmp_path / "result"
    target.mkdir()
    (target / "summary.json").write_text("the last run's")
    err = io.StringIO()
    with respx.mock(base_url=URL, assert_all_called=False) as mock:
        route = mock.post("/v1/inference").mock(return_value=httpx.Response(500))
        code = infer(InferOptions(source=study, url=URL, extract_to=target), err)
    assert code == Exit.USAGE
    assert route.call_count == 0  # nothing uploaded
    assert "already holds files" in err.getvalue()
    assert "--force" in err.getvalue()
    assert (target / "summary.json").read_text() == "the last run's"


def test_extract_with_force_replaces_only_what_the_result_has(tmp_path: Path, study: Path) -> None:
    target = tmp_path / "result"
    (target / "masks").mkdir(parents=True)
    (target / "summary.json").write_text("old")
    (target / "mine.txt").write_text("kept")
    with respx.mock(base_url=URL) as mock:
        mock.post("/v1/inference").mock(
            return_value=result_response(tmp_path, {"summary.json": b"new", "masks/a.png": b"m"})
        )
        code = infer(
            InferOptions(source=study, url=URL, extract_to=target, force=True), io.StringIO()
        )
    assert code == Exit.OK
    assert (target / "summary.json").read_bytes() == b"new"
    assert (target / "masks" / "a.png").read_bytes() == b"m"
    assert (target / "mine.txt").read_text() == "kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result", "served.zip", "study"]


def big_ratio_zip(path: Path) -> bytes:
    """A result the server's own checks refuse: 70 MiB of zeros deflated ~1000:1."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.raw", bytes(70 * 1024 * 1024))
    return path.read_bytes()


@pytest.mark.parametrize("kind", ["unsafe-name", "over-the-limits", "not-a-zip"])
def test_a_result_that_cannot_be_unpacked_is_kept_and_its_place_named(
    tmp_path: Path, study: Path, kind: str
) -> None:
    if kind == "unsafe-name":
        body = make_zip(tmp_path / "served.zip", {"../escape.txt": b"x"}).read_bytes()
    elif kind == "over-the-limits":
        body = big_ratio_zip(tmp_path / "served.zip")
    else:
        body = b"not a zip at all"
    target = tmp_path / "out" / "result"
    err = io.StringIO()
    with respx.mock(base_url=URL) as mock:
        mock.post("/v1/inference").mock(return_value=httpx.Response(200, content=body))
        code = infer(InferOptions(source=study, url=URL, extract_to=target), err)
    assert code == Exit.FAILED
    kept = tmp_path / "out" / "result.zip"
    assert f"kept, as received, in {kept}" in err.getvalue()
    assert kept.read_bytes() == body
    assert not target.exists()  # nothing half-unpacked
    assert not (tmp_path / "escape.txt").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["result.zip"]


def test_with_an_output_zip_a_failed_extraction_points_at_it(tmp_path: Path, study: Path) -> None:
    err = io.StringIO()
    output = tmp_path / "o.zip"
    with respx.mock(base_url=URL) as mock:
        mock.post("/v1/inference").mock(return_value=httpx.Response(200, content=b"junk"))
        code = infer(
            InferOptions(source=study, output=output, url=URL, extract_to=tmp_path / "r"), err
        )
    assert code == Exit.FAILED
    assert f"kept, as received, in {output}" in err.getvalue()
    assert output.read_bytes() == b"junk"


def test_a_folder_that_cannot_be_sent_whole_is_refused_before_uploading(
    tmp_path: Path, study: Path
) -> None:
    with open(bytes(study / "CT") + b"/scan-\xff.dcm", "wb") as bad:
        bad.write(b"x")
    err = io.StringIO()
    with respx.mock(base_url=URL, assert_all_called=False) as mock:
        route = mock.post("/v1/inference").mock(return_value=httpx.Response(200))
        code = infer(InferOptions(source=study, output=tmp_path / "o.zip", url=URL), err)
    assert code == Exit.USAGE
    assert "cannot be sent: a file or folder name in it is not valid UTF-8" in err.getvalue()
    assert not route.called
