"""Clients that try to hold the slot, grow the server's memory or confuse its parsing, against
the real server: each is refused or cut off, the slot is freed, and the server keeps serving."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import peak_rss
from tests.hardening.http_client import Answer, Reader, connect
from tests.harness.servers import Server, ServerFactory
from tests.harness.wait import wait_until
from tests.zips import make_zip

MiB = 1024 * 1024
MAX_UPLOAD = 24 * MiB
HEAD_TIMEOUT = 1.0
DOWNLOAD_IDLE = 2.0
BOUNDARY = b"bound"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def server(workdir: Path, mis_server: ServerFactory) -> Iterator[Server]:
    limits = {
        "max_upload_bytes": MAX_UPLOAD,
        "upload_idle_timeout_seconds": 2,
        "header_timeout_seconds": HEAD_TIMEOUT,
        "download_idle_timeout_seconds": DOWNLOAD_IDLE,
    }
    with mis_server(workdir, {"server": limits, "map": {"timeout_seconds": 30}}) as running:
        yield running


@pytest.fixture(autouse=True)
def settled(server: Server, workdir: Path) -> Iterator[None]:
    """Each test starts and ends with an idle server and an empty payload folder."""
    for name in ("started", "release"):
        (workdir / name).unlink(missing_ok=True)
    yield
    (workdir / "release").write_text("go")  # whatever still waits may finish
    wait_until(lambda: idle(server), 10, "the slot to be free")
    wait_until(lambda: server.leftovers() == [], 10, "an empty payload folder")


def idle(server: Server) -> bool:
    return httpx.get(f"{server.url}/v1/status", timeout=10).json()["state"] == "idle"


def healthy(server: Server) -> bool:
    return httpx.get(f"{server.url}/healthz", timeout=10).status_code == 200


def access_lines(server: Server, path: str) -> list[str]:
    return [line for line in server.log_text().splitlines() if f"| mis | POST {path} ->" in line]


def next_access_line(server: Server, path: str, seen: int) -> str:
    """The access line after the `seen` ones: written just after the answer, so wait for it."""
    wait_until(lambda: len(access_lines(server, path)) > seen, 5, "the access line")
    return access_lines(server, path)[seen]


def error_code(answer: Answer) -> str:
    assert answer.headers["content-type"] == "application/json"
    error = json.loads(answer.body)["error"]
    assert error["request_id"] == answer.headers["x-request-id"]
    return str(error["code"])


def zip_body(tmp_path: Path, files: dict[str, bytes], mode: str | None = None) -> bytes:
    content = dict(files)
    if mode:
        content["_mode"] = mode.encode()
    return make_zip(tmp_path / "in.zip", content).read_bytes()


def post(path: str, body: bytes, *headers: str, version: str = "1.1") -> bytes:
    lines = [f"POST {path} HTTP/{version}", "Host: 127.0.0.1", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def zip_post(body: bytes, *headers: str, path: str = "/v1/inference") -> bytes:
    return post(path, body, "Content-Type: application/zip", *headers)


# --- request heads -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: b\r\n" * 12_000,
        b"GET /" + b"a" * 100_000,
    ],
    ids=["one-long-header", "many-short-headers", "long-request-line"],
)
def test_a_head_over_the_limit_is_431_json_and_closed(server: Server, head: bytes) -> None:
    with connect(server) as sock:
        sock.sendall(head)  # never finished: refused as soon as it is too long
        reader = Reader(sock)
        answer = reader.answer()
        assert answer.status == 431
        assert error_code(answer) == "request_header_fields_too_large"
        assert "server.max_header_bytes" in json.loads(answer.body)["error"]["message"]
        assert reader.closed()


def test_a_head_just_under_the_limit_is_served(server: Server) -> None:
    headers = b"".join(b"X-Field-%d: %s\r\n" % (n, b"v" * 1000) for n in range(60))  # ~61 KB
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert Reader(sock).answer().status == 200


def test_a_header_block_of_many_megabytes_costs_no_memory_and_healthz_answers(
    server: Server,
) -> None:
    healthy(server)
    before = peak_rss(server)
    accepted = 0
    with connect(server) as sock:
        sock.sendall(b"POST /v1/inference HTTP/1.1\r\nHost: x\r\nX-Big: ")
        try:
            while accepted < 64 * MiB:
                sock.sendall(b"a" * (256 * 1024))
                accepted += 256 * 1024
                if accepted % (8 * MiB) == 0:
                    assert healthy(server)
        except OSError:  # refused: the server closed the connection under us
            pass
        assert healthy(server)
    growth = peak_rss(server) - before
    print(f"accepted {accepted / MiB:.1f} MiB of a 64 MiB header; peak RSS grew {growth / MiB:.1f}")
    assert accepted < 64 * MiB, "the server read the whole header block"
    assert growth < 16 * MiB


def test_a_head_sent_a_byte_at_a_time_is_408_after_the_header_timeout(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        reader = Reader(sock)
        started = time.monotonic()
        sock.settimeout(0.2)
        refused = None
        while refused is None and time.monotonic() - started < 10 * HEAD_TIMEOUT:
            try:
                sock.sendall(b"X")  # a slowloris: always something, never the end
                if reader.more():
                    refused = True
            except TimeoutError:
                continue
            except OSError:
                refused = False
        sock.settimeout(5)
        assert refused, "the slow head was never answered"
        answer = reader.answer()
        assert answer.status == 408
        assert "server.header_timeout_seconds" in answer.body.decode()


def test_a_connection_that_sends_nothing_is_closed(server: Server) -> None:
    with connect(server) as sock:
        assert Reader(sock, timeout=10 * HEAD_TIMEOUT).closed()


# --- bodies ------------------------------------------------------------------------------


def form(*parts: tuple[bytes, bytes]) -> bytes:
    """A multipart body of (name, data) parts; the part named file carries a filename."""
    chunks = []
    for name, data in parts:
        filename = b'; filename="in.zip"' if name == b"file" else b""
        chunks.append(
            b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="' + name + b'"'
            + filename + b"\r\n\r\n" + data + b"\r\n"
        )  # fmt: skip
    return b"".join(chunks) + b"--" + BOUNDARY + b"--\r\n"


def chunked(body: bytes, size: int = 65536) -> bytes:
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


FORM_TYPE = "Content-Type: multipart/form-data; boundary=" + BOUNDARY.decode()


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_large_part_that_is_not_the_file_counts_against_the_upload_limit(
    server: Server, tmp_path: Path, framing: str
) -> None:
    body = form((b"notes", b"n" * (MAX_UPLOAD + MiB)), (b"file", zip_body(tmp_path, {"a": b"1"})))
    with connect(server) as sock:
        if framing == "chunked":
            data = post("/v1/inference", chunked(body), FORM_TYPE, "Transfer-Encoding: chunked")
        else:
            data = post("/v1/inference", body, FORM_TYPE)
        sender = threading.Thread(target=lambda: _send_quietly(sock, data))
        sender.start()
        answer = Reader(sock).answer()
        sender.join()
    assert answer.status == 413
    assert error_code(answer) == "payload_too_large"
    assert "server.max_upload_bytes" in answer.body.decode()
    assert not any("| map |" in line for line in server.log_text().splitlines())


def test_an_announced_length_over_the_limit_is_413_before_the_body(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(zip_post(b"", f"Content-Length: {MAX_UPLOAD + 1}"))
        answer = Reader(sock).answer()  # answered with no byte of the body sent
    assert answer.status == 413


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the server may stop reading once it has refused
        sock.sendall(data)


def test_a_million_tiny_parts_are_refused_early_and_healthz_is_unaffected(
    server: Server,
) -> None:
    part = b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="x"\r\n\r\n1\r\n'
    body = part * 1_000_000 + b"--" + BOUNDARY + b"--\r\n"
    # chunked: no length for the server to refuse up front
    data = post("/v1/inference", chunked(body), FORM_TYPE, "Transfer-Encoding: chunked")
    seen = len(access_lines(server, "/v1/inference"))
    with connect(server) as sock:
        sender = threading.Thread(target=lambda: _send_quietly(sock, data))
        sender.start()
        assert healthy(server)
        answer = Reader(sock, timeout=30).answer()
        assert healthy(server)
        sender.join()
    assert answer.status == 413
    assert "more than 16 parts" in answer.body.decode()
    line = next_access_line(server, "/v1/inference", seen)
    received = int(line.split("(")[1].split(" bytes in")[0])
    assert received < MiB, f"read {received} of {len(body)} bytes before refusing: {line}"


def test_part_headers_are_bounded(server: Server) -> None:
    padding = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"p" * 4000) for n in range(5))  # 20 KB
    body = (
        b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data; name=\"file\"\r\n" + padding
        + b"\r\ndata\r\n--" + BOUNDARY + b"--\r\n"
    )  # fmt: skip
    with connect(server) as sock:
        sock.sendall(post("/v1/inference", body, FORM_TYPE))
        answer = Reader(sock).answer()
    assert answer.status == 400
    assert "headers over" in answer.body.decode()


@pytest.mark.parametrize(
    ("body", "framing"),
    [
        (b"f" * 40 + b"\r\nxx\r\n0\r\n\r\n", ["Transfer-Encoding: chunked"]),
        (b"0\r\n\r\n", ["Transfer-Encoding: chunked", "Content-Length: 5"]),
        (b"abc", ["Content-Length: 3", "Content-Length: 4"]),
        (b"", ["Content-Length: 99999999999999999999999"]),
        (b"", ["Content-Length: -1"]),
    ],
    ids=["chunk-size-overflow", "chunked-and-length", "two-lengths", "huge-length", "negative"],
)
def test_ambiguous_or_malformed_framing_is_a_json_400(
    server: Server, body: bytes, framing: list[str]
) -> None:
    with connect(server) as sock:
        sock.sendall(zip_post(body, *framing))
        answer = Reader(sock).answer()
    assert answer.status == 400
    assert error_code(answer) == "invalid_input"


def test_megabytes_of_chunk_extension_are_cut_off(server: Server) -> None:
    before = peak_rss(server)
    accepted = 0
    with connect(server) as sock:
        sock.sendall(zip_post(b"5;ext=", "Transfer-Encoding: chunked"))
        try:
            while accepted < 32 * MiB:
                sock.sendall(b"e" * (256 * 1024))
                accepted += 256 * 1024
        except OSError:
            pass
        assert healthy(server)
    assert accepted < 32 * MiB
    assert peak_rss(server) - before < 16 * MiB


def test_a_trailer_block_over_the_limit_cuts_the_request(server: Server, tmp_path: Path) -> None:
    archive = zip_body(tmp_path, {"a": b"1"})
    body = b"%x\r\n%s\r\n0\r\n" % (len(archive), archive) + b"X-T: t\r\n" * 20_000 + b"\r\n"
    with connect(server) as sock:
        sock.sendall(zip_post(body, "Transfer-Encoding: chunked"))
        reader = Reader(sock)
        assert reader.closed() or reader.answer().status != 200


# --- slow readers -------------------------------------------------------------------------


def test_a_client_that_reads_the_headers_and_then_nothing_is_cut_off(
    server: Server, tmp_path: Path
) -> None:
    body = zip_body(tmp_path, {"big.raw": os.urandom(16 * MiB)})  # the MAP copies it back
    seen = len(access_lines(server, "/v1/inference"))
    with connect(server, receive_buffer=16 * 1024) as sock:
        sock.sendall(zip_post(body))
        status, _ = Reader(sock, timeout=30).head()
        assert status == 200
        # read nothing more: the slot is free within the download idle timeout (and a margin)
        wait_until(lambda: idle(server), DOWNLOAD_IDLE + 3, "the slot to be freed")
        wait_until(lambda: server.leftovers() == [], 2, "the job's files to be deleted")
    log = server.log_text()
    assert "to drain in 2 seconds (server.download_idle_timeout_seconds)" in log
    assert "client_disconnected" in next_access_line(server, "/v1/inference", seen)
    assert "Traceback" not in log


def test_a_slow_but_steady_reader_gets_the_whole_result(server: Server, tmp_path: Path) -> None:
    data = os.urandom(6 * MiB)
    with connect(server) as sock:
        sock.sendall(zip_post(zip_body(tmp_path, {"big.raw": data})))
        answer = Reader(sock, timeout=30, pause=0.02).answer()  # ~3 MB/s, never stalled long
    assert answer.status == 200
    with zipfile.ZipFile(io.BytesIO(answer.body)) as zf:
        assert zf.read("big.raw") == data


# --- one connection, several requests ---------------------------------------------------


def test_pipelined_requests_are_answered_in_order(server: Server, tmp_path: Path) -> None:
    body = zip_body(tmp_path, {"a.txt": b"first"})
    with connect(server) as sock:
        sock.sendall(zip_post(body) + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + zip_post(body))
        reader = Reader(sock, timeout=30)
        answers = [reader.answer() for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 200]
    assert answers[1].body == b'{"status":"ok"}'


def test_pipelined_heads_over_the_limit_together_are_each_within_it(server: Server) -> None:
    headers = b"".join(b"X-Field-%d: %s\r\n" % (n, b"v" * 1000) for n in range(40))  # ~41 KB
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    with connect(server) as sock:
        sock.sendall(request * 4)  # ~164 KB in one send: each head is under the limit
        reader = Reader(sock)
        assert [reader.answer().status for _ in range(4)] == [200] * 4


def test_a_connection_pipelining_past_the_bound_is_closed(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 1000)
        reader = Reader(sock)
        answered = 0
        with contextlib.suppress(EOFError, ConnectionResetError):
            while reader.answer().status == 200:
                answered += 1
        assert answered < 1000  # the rest was never parsed: the connection was closed
        assert reader.closed()
    assert "pipelined requests waiting" in server.log_text()


def test_a_request_sent_on_the_connection_while_the_first_runs_waits_its_turn(
    server: Server, workdir: Path, tmp_path: Path
) -> None:
    with connect(server) as sock:
        sock.sendall(zip_post(zip_body(tmp_path, {"a.txt": b"x"}, mode="wait")))
        wait_until((workdir / "started").exists, 10, "the MAP to start")
        sock.sendall(b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(2 * HEAD_TIMEOUT)  # longer than a head may take: the waiting one is kept
        (workdir / "release").write_text("go")
        reader = Reader(sock, timeout=30)
        first, second = reader.answer(), reader.answer()
    assert first.status == 200
    assert second.status == 200
    assert json.loads(second.body)["state"] == "idle"  # answered after the first finished


def test_expect_100_continue_gets_the_final_answer_without_the_body_when_refused(
    server: Server, workdir: Path, tmp_path: Path
) -> None:
    body = zip_body(tmp_path, {"a.txt": b"x"})
    with connect(server) as sock:
        sock.sendall(zip_post(b"", "Expect: 100-continue", f"Content-Length: {MAX_UPLOAD + 1}"))
        reader = Reader(sock)
        status, _ = reader.head()
        assert status == 413  # no 100 Continue: the body is not wanted
    with connect(server) as sock:
        sock.sendall(zip_post(b"", "Expect: 100-continue", f"Content-Length: {len(body)}"))
        reader = Reader(sock, timeout=30)
        assert reader.head()[0] == 100
        sock.sendall(body)
        assert reader.answer().status == 200


def test_http_1_0_is_told_to_use_http_1_1_for_inference(server: Server, tmp_path: Path) -> None:
    body = zip_body(tmp_path, {"a.txt": b"x"})
    with connect(server) as sock:
        sock.sendall(post("/v1/inference", body, "Content-Type: application/zip", version="1.0"))
        reader = Reader(sock)
        answer = reader.answer()
        assert reader.closed()
    assert answer.status == 505
    assert error_code(answer) == "http_version_not_supported"
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        assert Reader(sock).answer().status == 200


# --- request ids --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_slots(
    tmp_path_factory: pytest.TempPathFactory, mis_server: ServerFactory
) -> Iterator[tuple[Server, Path]]:
    work = tmp_path_factory.mktemp("two-slots")
    overrides = {"server": {"max_concurrent": 2}, "map": {"timeout_seconds": 30}}
    with mis_server(work, overrides) as running:
        yield running, work


@pytest.mark.parametrize(
    "ids", [("study-7", "study-7"), ("Study-7", "study-7")], ids=["same", "case"]
)
def test_two_requests_with_one_request_id_are_both_answered_whole(
    two_slots: tuple[Server, Path], tmp_path: Path, ids: tuple[str, str]
) -> None:
    server, work = two_slots
    (work / "release").unlink(missing_ok=True)
    results: dict[int, httpx.Response] = {}

    def send(n: int) -> None:
        archive = make_zip(
            tmp_path / f"in-{n}.zip", {"mine.txt": f"request {n}".encode(), "_mode": b"wait"}
        )
        results[n] = httpx.post(
            f"{server.url}/v1/inference",
            content=archive.read_bytes(),
            headers={"Content-Type": "application/zip", "X-Request-ID": ids[n]},
            timeout=60,
        )

    threads = [threading.Thread(target=send, args=(n,)) for n in (0, 1)]
    for thread in threads:
        thread.start()
    status = lambda: httpx.get(f"{server.url}/v1/status").json()  # noqa: E731
    wait_until(lambda: status()["in_flight"] == 2, 10, "both requests to run")
    (work / "release").write_text("go")
    for thread in threads:
        thread.join()
    for n in (0, 1):
        response = results[n]
        assert response.status_code == 200, response.text
        assert response.headers["x-request-id"] == ids[n]
        with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
            assert zf.read("mine.txt") == f"request {n}".encode()
    assert "Traceback" not in server.log_text()
    wait_until(lambda: server.leftovers() == [], 5, "an empty payload folder")


# --- paths and hosts ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/upload", "/upload/", "/v1/inference/"])
def test_legacy_and_trailing_slash_paths_answer(server: Server, tmp_path: Path, path: str) -> None:
    archive = zip_body(tmp_path, {"a.txt": b"legacy"})
    response = httpx.post(f"{server.url}{path}", files={"file": archive}, timeout=30)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        assert zf.read("a.txt") == b"legacy"


@pytest.mark.parametrize("path", ["/healthz/", "/static", "/v1/status/", "/nowhere/"])
def test_nothing_is_built_from_the_host_header(server: Server, path: str) -> None:
    with connect(server) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: evil.example\r\n\r\n".encode())
        answer = Reader(sock).answer()
    assert "location" not in answer.headers
    assert b"evil" not in answer.body
    assert all("evil" not in value for value in answer.headers.values())
