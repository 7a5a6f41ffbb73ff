"""Multipart forms a hostile or odd client sends, against the real server.

A boundary over python-multipart's own limit (256 bytes) made its parser's constructor raise
an error MIS did not expect: `500 internal_error` with a traceback in the log, for what is
bad input. RFC 2046 allows 1 to 70 characters; longer is `400`, like no boundary at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hardening.http_client import Reader, connect
from tests.harness.servers import Server, ServerFactory
from tests.zips import make_zip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mis_server: ServerFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("attack-multipart")
    with mis_server(workdir) as running:
        yield running


def form(boundary: bytes, zip_bytes: bytes) -> bytes:
    body = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="in.zip"\r\n\r\n'
        + zip_bytes
        + b"\r\n--"
        + boundary
        + b"--\r\n"
    )
    return (
        b"POST /v1/inference HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


@pytest.mark.parametrize("length", [257, 5000])
def test_a_boundary_over_the_limit_is_a_json_400_not_a_500(
    server: Server, tmp_path: Path, length: int
) -> None:
    zip_bytes = make_zip(tmp_path / "in.zip", {"a.txt": b"x"}).read_bytes()
    with connect(server) as sock:
        sock.sendall(form(b"b" * length, zip_bytes))
        answer = Reader(sock).answer()
    assert answer.status == 400, answer.body
    assert b'"invalid_input"' in answer.body
    assert b"boundary" in answer.body
    assert "Traceback" not in server.log_text()
    server.wait_until_clean()


def test_a_boundary_of_70_characters_is_served(server: Server, tmp_path: Path) -> None:
    zip_bytes = make_zip(tmp_path / "in.zip", {"a.txt": b"x"}).read_bytes()
    with connect(server) as sock:
        sock.sendall(form(b"b" * 70, zip_bytes))
        answer = Reader(sock, timeout=30).answer()
    assert answer.status == 200
    server.wait_until_clean()
