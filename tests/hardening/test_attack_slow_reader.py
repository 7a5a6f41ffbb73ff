"""A reader that never stalls for `download_idle_timeout_seconds` but drags on: the slot is
held for as long as the download takes, with no bound on the total.

The idle timer (mis_app.http.pacing) is reset whenever the transport's write buffer drains
below its low-water mark. Measured against the real server: reading ~1.5 MiB every
`download_idle_timeout_seconds - ε` is enough to keep it from ever firing (the server writes
~1 MiB chunks, so that is what must drain per period). With the default 30 s, that is about
53 KB/s: a 1 GB result holds the only slot for more than five hours, and the output size is
what the client's own upload makes it. Uploads have a total deadline
(`upload_timeout_seconds`) and a minimum average rate; downloads have neither.

The fix this test expects: a total download deadline, `server.download_timeout_seconds`
(mirroring `upload_timeout_seconds`), or an average-rate floor; past it the connection is cut,
the job's files deleted and the slot freed. Until that setting exists the test runs without
it and fails on the symptom: the slot stays busy for the whole slow download.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import httpx

from mis_app.settings import ServerSettings
from tests.hardening.http_client import connect
from tests.harness.servers import Server, ServerFactory
from tests.harness.wait import wait_until
from tests.zips import make_zip

MiB = 1024 * 1024
DOWNLOAD_IDLE = 2.0
DOWNLOAD_DEADLINE = 4.0
PIECE = 3 * MiB // 2  # read this much ...
PAUSE = 1.5  # ... then pause this long: never idle for DOWNLOAD_IDLE, about 1 MB/s


def state(server: Server) -> str:
    return str(httpx.get(f"{server.url}/v1/status", timeout=10).json()["state"])


def trickle(sock: socket.socket, stop: threading.Event) -> None:
    """Read PIECE bytes, pause, again, until the server closes or the test ends."""
    sock.settimeout(PAUSE)
    while not stop.is_set():
        got = 0
        try:
            while got < PIECE:
                data = sock.recv(PIECE - got)
                if not data:
                    return
                got += len(data)
        except (TimeoutError, OSError):
            if stop.is_set():
                return
        stop.wait(PAUSE)


def test_a_reader_that_trickles_without_stalling_cannot_hold_the_slot(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    server_settings: dict[str, object] = {"download_idle_timeout_seconds": DOWNLOAD_IDLE}
    if "download_timeout_seconds" in ServerSettings.model_fields:
        server_settings["download_timeout_seconds"] = DOWNLOAD_DEADLINE
    body = make_zip(tmp_path / "in.zip", {"big.raw": os.urandom(24 * MiB)}).read_bytes()
    overrides = {"server": server_settings, "map": {"timeout_seconds": 30}}
    with mis_server(tmp_path, overrides) as server:
        sock = connect(server, receive_buffer=16384)
        stop = threading.Event()
        reader = threading.Thread(target=trickle, args=(sock, stop), daemon=True)
        try:
            sock.sendall(
                b"POST /v1/inference HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/zip\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            reader.start()
            wait_until(lambda: "job finished" in server.log_text(), 30, "the MAP to finish")
            # the whole 24 MB at ~1 MB/s takes ~20 s; a deadline frees the slot well before
            wait_until(
                lambda: state(server) == "idle",
                DOWNLOAD_DEADLINE + 2,
                "the slot to be freed from a client trickling its download",
            )
            server.wait_until_clean()
        finally:
            stop.set()
            sock.close()
            reader.join(10)
