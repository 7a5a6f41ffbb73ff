"""Nothing a client or a MAP sends can forge or colour a line of MIS's log (text and JSON), an
error message or the page; MIS's own lines name no payload file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hardening.http_client import Reader, connect
from tests.harness.servers import Server, ServerFactory
from tests.harness.wait import wait_until
from tests.zips import make_zip

FORGED_PATH = (
    b"/a%0d%0a2026-01-01 00:00:00.000 | ERROR | forged | mis | %1b[31mred%1b[0m"
    .replace(b" ", b"%20").replace(b"|", b"%7c").replace(b"[", b"%5b")
)  # fmt: skip
CONTROL_BYTES = [chr(c) for c in (*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F)]


@pytest.fixture(scope="module", params=["text", "json"])
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    mis_server: ServerFactory,
) -> Iterator[Server]:
    work = tmp_path_factory.mktemp(f"logs-{request.param}")
    with mis_server(work, {"server": {"log_format": request.param}}) as running:
        yield running


def raw_log(server: Server) -> str:
    return server.log.read_bytes().decode("utf-8")


def assert_clean(text: str) -> None:
    """No control character but the line breaks between records."""
    found = sorted({c for c in text if c in CONTROL_BYTES or c == "\r"})
    assert not found, f"control characters in the log: {found}"


def test_a_path_with_crlf_and_escapes_leaves_one_well_formed_line(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(b"GET " + FORGED_PATH + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert Reader(sock).answer().status == 404
    # the access line is written just after the answer
    wait_until(lambda: "forged" in raw_log(server), 5, "the access line")
    log = raw_log(server)
    assert_clean(log)
    lines = [line for line in log.splitlines() if "forged" in line]
    assert len(lines) == 1, lines
    [line] = lines
    if line.startswith("{"):
        assert "/a\\r\\n2026-01-01" in line  # JSON's own escapes: raw, nothing forged
        assert "\\u001b[31mred\\u001b[0m" in line
        record = json.loads(line)
        assert record["access"]["path"].startswith("/a\r\n2026-01-01")  # as it was sent
        assert "\x1b[31m" in record["message"]
    else:
        assert "| mis | GET /a\\x0d\\x0a2026-01-01 00:00:00.000 | ERROR | forged" in line
        assert "\\x1b[31mred\\x1b[0m -> 404" in line
    assert not any(line.startswith("2026-01-01") for line in log.splitlines())


def test_a_map_that_prints_control_characters_cannot_forge_or_colour(
    server: Server, tmp_path: Path
) -> None:
    archive = make_zip(tmp_path / "in.zip", {"_mode": b"ansi"})
    response = httpx.post(
        f"{server.url}/v1/inference", files={"file": archive.read_bytes()}, timeout=30
    )
    assert response.status_code == 500
    message = response.json()["error"]["message"]
    assert_clean(message.replace("\n", ""))  # its lines are separate lines, each escaped
    assert "\\x1b[31mred\\x1b[0m\\x0dERROR forged | mis | job finished\\x1b]0;title\\x07" in message
    log = raw_log(server)
    assert_clean(log)
    assert sum("ERROR forged" in line for line in log.splitlines()) == 1  # the MAP line
    assert not any(line.startswith("ERROR forged") for line in log.splitlines())


def test_a_header_with_control_characters_is_neither_echoed_nor_logged_raw(
    server: Server,
) -> None:
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/inference HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
            b"Content-Type: text/\x1b[31mred\x7f\r\n\r\n"
        )
        answer = Reader(sock).answer()
    assert answer.status in (400, 415)  # the parser may refuse the byte itself
    assert_clean(answer.body.decode())
    assert_clean(raw_log(server))


def test_payload_file_names_stay_out_of_mis_own_lines(server: Server, tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "in.zip", {"patient-jane-doe.dcm": b"x", "_mode": b"fail"})
    httpx.post(f"{server.url}/v1/inference", files={"file": archive.read_bytes()}, timeout=30)
    assert "patient-jane-doe" not in raw_log(server)
