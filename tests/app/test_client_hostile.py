"""`mis infer` (the real command, as a subprocess) against a hostile HTTP server on 127.0.0.1.

The server is a few lines of `http.server` that answer what a broken or malicious service
might: an error body of 900 MB, terminal escape sequences, `Retry-After: 99999999`, a 401
that quotes the token back. The client must stay small, print nothing raw, wait a bounded
time and never show a token.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import attrs
import pytest

from mis_core.error_catalogue import Exit
from tests.harness.command import mis_argv, mis_command
from tests.zips import make_zip

HUGE = 900_000_000
Answer = Callable[[BaseHTTPRequestHandler, "Hostile"], None]


@attrs.define
class Hostile:
    url: str
    requests: list[dict[str, str]] = attrs.Factory(list)
    sent: list[int] = attrs.Factory(list)  # body bytes written per answer
    answered: threading.Event = attrs.Factory(threading.Event)


@contextmanager
def hostile_server(answer: Answer) -> Iterator[Hostile]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            hostile.requests.append(dict(self.headers))
            _drain(self)
            answer(self, hostile)
            hostile.answered.set()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    hostile = Hostile(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hostile
    finally:
        server.shutdown()
        server.server_close()


def _drain(handler: BaseHTTPRequestHandler) -> None:
    """Read the (chunked) upload, so that closing the connection resets nothing."""
    if handler.headers.get("transfer-encoding", "").lower() != "chunked":
        handler.rfile.read(int(handler.headers.get("content-length") or 0))
        return
    while size := int(handler.rfile.readline().split(b";")[0], 16):
        handler.rfile.read(size + 2)
    handler.rfile.readline()


def json_error(status: int, code: str, message: str, **headers: str) -> Answer:
    body = json.dumps({"error": {"code": code, "message": message, "request_id": "r"}}).encode()

    def answer(handler: BaseHTTPRequestHandler, _: Hostile) -> None:
        handler.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return answer


@pytest.fixture
def study(tmp_path: Path) -> Path:
    return make_zip(tmp_path / "study.zip", {"IM1.dcm": b"\x01" * 2000})


def run_infer(*args: str | Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return mis_command("infer", *args, timeout=timeout)


def test_a_tokens_file_sends_its_first_token_and_no_token_is_ever_printed(
    tmp_path: Path, study: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# MIS tokens\n\n  # the old one\nfirst-Token_1\nsecond-Token_2\n")
    echo = json_error(401, "unauthorized", "The token first-Token_1 is not valid.")
    with hostile_server(echo) as server:
        result = run_infer(
            study, "-o", tmp_path / "o.zip", "--url", server.url, "--token-file", tokens
        )
    assert result.returncode == Exit.UNAUTHORIZED, result.stderr
    assert [r["Authorization"] for r in server.requests] == ["Bearer first-Token_1"]
    assert "holds 2 tokens; sending the first" in result.stderr
    assert "401 unauthorized: The token <token> is not valid." in result.stderr
    assert "Token_" not in result.stdout + result.stderr


def test_a_malformed_tokens_file_names_the_line_not_its_text(tmp_path: Path, study: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# tokens\nfirst-Token_1\nsecond Token_2 with a typo\n")
    result = run_infer(study, "-o", tmp_path / "o.zip", "--token-file", tokens)
    assert result.returncode == Exit.USAGE
    assert f"the token file {tokens} has a malformed line 3" in result.stderr
    assert "Token_" not in result.stderr


def endless_error(handler: BaseHTTPRequestHandler, server: Hostile) -> None:
    handler.send_response(500)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(HUGE))
    handler.end_headers()
    sent, chunk = 0, b'{"error": "' + b"x" * 65536
    try:
        while sent < HUGE:
            handler.wfile.write(chunk)
            sent += len(chunk)
    except OSError:
        pass  # the client hung up, as it should
    server.sent.append(sent)


# The client reports its own peak from /proc/self/status as it exits: the kernel's ru_maxrss
# would count the pages it shared with pytest between fork and exec.
PEAK_REPORTING = (
    "import atexit, runpy, sys\n"
    "def peak():\n"
    "    line = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
    "    sys.stderr.write('peak KiB ' + line.split()[1] + '\\n')\n"
    "atexit.register(peak)\n"
    "sys.argv = ['mis', *sys.argv[1:]]\n"
    "runpy.run_module('mis_app', run_name='__main__')\n"
)


PEAK_ARGV = [sys.executable, "-c", PEAK_REPORTING]


def test_a_900_mb_error_body_is_read_only_in_part(tmp_path: Path, study: Path) -> None:
    with hostile_server(endless_error) as server:
        process = subprocess.run(
            [*PEAK_ARGV, "infer", study, "--url", server.url, "-o", tmp_path / "o.zip"],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        err = process.stderr.decode()
        assert server.answered.wait(timeout=30)  # the handler sees the hang-up, then returns
    assert process.returncode == Exit.FAILED, err
    assert 'mis infer: 500 http_500: {"error": "xxx' in err
    peak = int(err.rpartition("peak KiB ")[2].split()[0])
    assert peak < 300 * 1024, peak  # KiB: far from 900 MB
    assert server.sent
    assert server.sent[0] < 100_000_000  # the client stopped reading


@pytest.mark.parametrize(
    "answer",
    [
        json_error(
            500,
            "map_failed",
            "boom\x1b]52;c;aGVsbG8=\x07\x1b[2J\x1b[H\u009b31m\nmis infer: saved o.zip",
        ),
        json_error(500, "map_\x1b[2Jfailed", "boom"),
    ],
    ids=["message", "code"],
)
def test_a_servers_text_reaches_the_terminal_escaped(
    tmp_path: Path, study: Path, answer: Answer
) -> None:
    with hostile_server(answer) as server:
        result = run_infer(study, "-o", tmp_path / "o.zip", "--url", server.url)
    assert result.returncode in (Exit.FAILED, Exit.MAP_FAILED), result.stderr
    assert "\\x1b" in result.stderr
    assert not set(result.stderr) & {"\x1b", "\x07", "\x9b"}
    assert all(not line.startswith("mis infer: saved") for line in result.stderr.splitlines())


def test_a_raw_error_page_is_escaped_too(tmp_path: Path, study: Path) -> None:
    def answer(handler: BaseHTTPRequestHandler, _: Hostile) -> None:
        body = b"<html>\x1b]52;c;aGVsbG8=\x07 bad gateway\x1b[2J</html>"
        handler.send_response(502)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    with hostile_server(answer) as server:
        result = run_infer(study, "-o", tmp_path / "o.zip", "--url", server.url)
    assert result.returncode == Exit.FAILED
    assert "502 http_502: <html>\\x1b]52;c;aGVsbG8=\\x07 bad gateway\\x1b[2J" in result.stderr


FOREVER = json_error(500, "busy", "Another request is running.", **{"Retry-After": "99999999"})


def test_retry_after_is_capped_at_60_seconds(tmp_path: Path, study: Path) -> None:
    with hostile_server(FOREVER) as server:
        process = subprocess.Popen(
            mis_argv("infer", study, "-o", tmp_path / "o.zip", "--url", server.url, "--wait"),
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        try:
            line = _first_line(process, deadline=time.monotonic() + 20)
        finally:
            process.kill()
            process.wait()
    assert line == "mis infer: the service is busy; retry 1/10 in 60s\n"


def _first_line(process: subprocess.Popen[bytes], deadline: float) -> str:
    assert process.stderr is not None
    received = b""
    while b"\n" not in received and time.monotonic() < deadline:
        ready, _, _ = select.select([process.stderr], [], [], deadline - time.monotonic())
        if not ready:
            break
        piece = os.read(process.stderr.fileno(), 4096)
        if not piece:
            break
        received += piece
    return received.decode().partition("\n")[0] + "\n"


def test_wait_stops_at_max_wait_whatever_the_server_asks(tmp_path: Path, study: Path) -> None:
    with hostile_server(FOREVER) as server:
        started = time.monotonic()
        result = run_infer(
            study, "-o", tmp_path / "o.zip", "--url", server.url, "--wait", "--max-wait", "1.5"
        )
        elapsed = time.monotonic() - started
    assert result.returncode == Exit.BUSY, result.stderr
    assert "retry 1/10 in 1.5s" in result.stderr
    assert "still busy after waiting 1.5s in all (--max-wait)" in result.stderr
    assert len(server.requests) == 2
    assert elapsed < 15
