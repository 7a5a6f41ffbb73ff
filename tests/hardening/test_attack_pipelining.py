"""A flood of tiny pipelined requests stalls the event loop: `/healthz` stops answering.

asyncio hands the protocol up to 256 KiB per read, and httptools parses all of it in one
call, running uvicorn's Python callbacks for every request in it (a request object, its
scope, and a place in the connection's pipeline), whatever the requests before still wait
for. `GET /healthz HTTP/1.1` and an empty line are 27 bytes: one read holds ~10,000 of
them, and parsing it keeps the event loop busy for a good fraction of a second. Measured
against the real server on this machine: 200 connections sending one such read each kept
`/healthz` from answering within 3 s for over a minute (the probe ran out before it did),
while the server's memory grew by ~30 MB. A liveness probe would restart the pod, and the
study in flight with it. (Each connection is then closed with `431`: the head accounting
counts all of a read's earlier requests as the last one's head.)

The fix this test expects: a connection may have only a few requests waiting behind the
one being answered; past that it stops being parsed (a callback that raises ends the
parser's run) and is closed, so one read costs a bounded number of callbacks.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hardening.http_client import connect
from tests.harness.servers import Server, ServerFactory

CONNECTIONS = 200
READ = 256 * 1024  # what asyncio reads at once
REQUEST = b"GET /healthz HTTP/1.1\r\n\r\n"


@pytest.fixture
def server(tmp_path: Path, mis_server: ServerFactory) -> Iterator[Server]:
    with mis_server(tmp_path) as running:
        yield running


def test_a_flood_of_pipelined_requests_leaves_healthz_answering(server: Server) -> None:
    flood = REQUEST * (READ // len(REQUEST))
    sockets: list[socket.socket] = []
    try:
        for _ in range(CONNECTIONS):
            sock = connect(server, receive_buffer=4096)  # reads none of the answers
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.send(flood)  # what the kernel takes at once: enough for one read
            sockets.append(sock)
        answer = httpx.get(f"{server.url}/healthz", timeout=10)
        assert answer.status_code == 200
    finally:
        for sock in sockets:
            sock.close()
