"""Attack: a connection that got its answer early keeps trickling the body it announced.

Found: a request answered before its body is read (401 without a token, 404, 405, 415...)
leaves uvicorn reading the rest of the body to throw it away, and each byte that arrives
cancels the keep-alive timer. A client sending one byte every second or so held its
connection open for as long as it liked, with no token, past `header_timeout_seconds`
and `upload_idle_timeout_seconds`: a few thousand such clients hold every connection
`server.max_connections` allows, and the service refuses everyone else.

The fix this test expects: once the answer is out, the rest of the body gets
`header_timeout_seconds` to arrive, then the connection is closed.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.hardening.http_client import connect
from tests.harness.servers import ServerFactory

HEAD_TIMEOUT = 2.0
TOKEN = "trickle-token-0123456789"
HEADS = {
    "401 without a token": b"POST /v1/inference HTTP/1.1\r\nHost: x\r\n"
    b"Content-Type: application/zip\r\nContent-Length: 1000000\r\n\r\n",
    "404": b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n",
    "415 with a token": b"POST /v1/inference HTTP/1.1\r\nHost: x\r\n"
    b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 1000000\r\n\r\n",
}


def closed_after(
    sock: socket.socket, head: bytes, give_up: float, trickle: bytes = b"c"
) -> float | None:
    """Send `head`, then `trickle` every 0.3 s; when the server closed (None: not yet)."""
    sock.sendall(head)
    sock.settimeout(0.3)
    started = time.monotonic()
    while time.monotonic() - started < give_up:
        try:
            if sock.recv(65536) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:
            return time.monotonic() - started
        try:
            sock.sendall(trickle)
        except OSError:
            return time.monotonic() - started
    return None


@pytest.mark.parametrize("case", sorted(HEADS))
def test_a_body_trickled_after_the_answer_does_not_hold_the_connection(
    tmp_path: Path, case: str, mis_server: ServerFactory
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    settings = {
        "header_timeout_seconds": HEAD_TIMEOUT,
        "upload_idle_timeout_seconds": HEAD_TIMEOUT,
        "auth": {"tokens_file": str(tokens)},
    }
    with mis_server(tmp_path, {"server": settings}) as server, connect(server) as sock:
        closed = closed_after(sock, HEADS[case], give_up=4 * HEAD_TIMEOUT + 2)
    assert closed is not None, f"{case}: still open {4 * HEAD_TIMEOUT + 2:g} s after its answer"
    assert closed < 3 * HEAD_TIMEOUT + 1


def test_blank_lines_trickled_after_an_answer_do_not_hold_the_connection(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    """The parser skips blank lines before a request line, so they begin no request (and
    no head timer), while each one puts off uvicorn's keep-alive timeout: sent every second
    after an answer, they held a connection for ever."""
    head_timeout = {"server": {"header_timeout_seconds": HEAD_TIMEOUT}}
    with mis_server(tmp_path, head_timeout) as server, connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        closed = closed_after(sock, b"\r\n", give_up=4 * HEAD_TIMEOUT + 2, trickle=b"\r\n")
    assert closed is not None, "still open, long after its answer, on blank lines alone"
    assert closed < 3 * HEAD_TIMEOUT + 1
