"""An upload that sends a burst and then trickles: the minimum rate, taken as the average
since the upload began, is defeated by front-loading.

`min_upload_bytes_per_second` exists so that "a client trickling a byte at a time can no
longer hold the slot for the whole `upload_timeout_seconds`". But the average since the
start stays high long after the client has stopped sending anything worth the name: with the
defaults (16 KiB/s, 3600 s), a burst of 58 MB followed by one byte every 29 s keeps the
average above the floor for the whole hour, and the slot is held for all of it. Here, with a
1 MiB/s floor, a 16 MiB burst buys ~16 s of trickling at a byte every half second.

The fix this test expects: the rate judged over a recent window (for example the last
`upload_idle_timeout_seconds` or a few of them), so a trickle is cut off soon after it
starts, whatever came before.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from tests.hardening.http_client import Reader, connect
from tests.harness.servers import ServerFactory
from tests.harness.wait import wait_until

MiB = 1024 * 1024
IDLE = 1.0
MIN_RATE = 1 * MiB
BURST = 16 * MiB
DRIP = 0.5  # seconds between single bytes: never idle for IDLE


def test_a_burst_then_a_trickle_is_cut_off_soon_after_the_trickle_starts(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    limits = {
        "upload_idle_timeout_seconds": IDLE,
        "min_upload_bytes_per_second": MIN_RATE,
        "upload_timeout_seconds": 120,
    }
    with mis_server(tmp_path, {"server": limits}) as server, connect(server) as sock:
        sock.sendall(
            b"POST /v1/inference HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/zip\r\n"
            + f"Content-Length: {2 * BURST}\r\n\r\n".encode()
            + b"\0" * BURST
        )
        trickle_began = time.monotonic()
        sock.settimeout(DRIP)  # the pace of the trickle: wait this long for an answer
        while time.monotonic() - trickle_began < BURST / MIN_RATE + 10:
            try:
                sock.send(b"\0")
                sock.recv(1, socket.MSG_PEEK)  # an answer (or a close) has come
            except TimeoutError:
                continue  # nothing yet: one more byte
            except OSError:
                pass
            break
        held = time.monotonic() - trickle_began
        # whatever the burst, a trickle far below the floor is refused within a few idle times
        assert held < 4 * IDLE + 2, f"a byte every {DRIP}s held the slot for {held:.1f}s"
        sock.settimeout(10)
        assert Reader(sock).answer().status == 408
        wait_until(
            lambda: httpx.get(f"{server.url}/v1/status").json()["state"] == "idle",
            5,
            "the slot to be free",
        )
