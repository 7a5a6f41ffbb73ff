"""A failure after the 200 has gone out: the server drops the connection before the chunked
body's end, so no client can take the cut body for a whole result."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import zip_post
from tests.harness.servers import Server, ServerFactory
from tests.harness.unavailable import require_tool
from tests.harness.wait import wait_until
from tests.zips import make_zip

# Loaded by the server's Python at start-up (PYTHONPATH): reading the output fails, as a disk
# would, once the first chunk of the zip has been sent.
FAILING_DISK = """
from mis_adapters.storage import volume

_pack = volume.LocalStorage.pack_output


async def _fails_after_the_first_chunk(self, workspace):
    async for chunk in _pack(self, workspace):
        yield chunk
        raise OSError(5, "Input/output error")


volume.LocalStorage.pack_output = _fails_after_the_first_chunk
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mis_server: ServerFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("cut")
    (work / "hook").mkdir()
    (work / "hook" / "sitecustomize.py").write_text(FAILING_DISK)
    with mis_server(work, env={"PYTHONPATH": str(work / "hook")}) as running:
        yield running


@pytest.fixture
def study(tmp_path: Path) -> bytes:
    return make_zip(tmp_path / "in.zip", {"a.dcm": os.urandom(300_000)}).read_bytes()


def test_the_raw_response_has_a_200_and_no_end_of_body(server: Server, study: bytes) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(zip_post(study))
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    assert b"PK\x03\x04" in body  # the zip had begun
    assert not body.endswith(b"0\r\n\r\n")  # but never the chunked body's end


def test_clients_see_an_incomplete_body_not_a_result(
    server: Server, study: bytes, tmp_path: Path
) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(
            f"{server.url}/v1/inference",
            content=study,
            headers={"Content-Type": "application/zip"},
            timeout=30,
        )
    curl = subprocess.run(
        [
            require_tool("curl"),
            "-sS",
            "-o",
            str(tmp_path / "out.zip"),
            "-H",
            "Content-Type: application/zip",
            "--data-binary",
            "@-",
            f"{server.url}/v1/inference",
        ],
        input=study,
        capture_output=True,
    )
    assert curl.returncode == 18, curl.stderr  # CURLE_PARTIAL_FILE
    wait_until(lambda: server.leftovers() == [], 10, "the workspaces to be deleted")
