"""Attack: a flood of TCP connections to the HTTPS port that never start their TLS handshake.

Found against a MIS with 1,024 descriptors serving HTTPS: the event loop did the TLS
handshake before the protocol saw the connection, so none of 1,100 connections that sent
no ClientHello was counted against `server.max_connections` or timed by
`header_timeout_seconds`; each held a descriptor for the loop's 60 s handshake timeout.
They took every descriptor: new connections were reset, `/healthz` with them, and nothing
was logged.

The fix this test expects: a connection counts from the moment it is accepted (beyond the
bound it is closed at once), its handshake must end within `header_timeout_seconds`, and
a study in flight keeps the descriptors it needs.
"""

from __future__ import annotations

import resource
import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.hardening.test_attack_connection_flood import (
    Closings,
    assert_whole,
    open_idle,
    study_files,
)
from tests.harness.certificates import self_signed
from tests.harness.servers import ServerFactory
from tests.harness.wait import wait_until
from tests.zips import make_zip

pytestmark = pytest.mark.slow

DESCRIPTORS = 1024
FLOOD = 1100
# long enough for a loaded machine to accept the whole flood before the first handshakes time
# out: otherwise the bound is never reached, and its log line never written
HEAD_TIMEOUT = 8.0


def test_a_flood_of_unstarted_tls_handshakes_cannot_starve_a_running_study(
    tmp_path: Path,
    mis_server: ServerFactory,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FLOOD + 200:  # the test holds the whole flood itself
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, FLOOD + 400), hard))
    cert, key = self_signed(tmp_path)
    trust = ssl.create_default_context(cafile=str(cert))
    tls = {"cert_file": str(cert), "key_file": str(key)}
    overrides = {
        "server": {"header_timeout_seconds": HEAD_TIMEOUT, "tls": tls},
        "map": {"timeout_seconds": 60},
    }
    files = study_files()
    study = make_zip(tmp_path / "study.zip", {"_mode": b"wait", **files})
    result: dict[str, object] = {}

    def post() -> None:
        try:
            result["response"] = httpx.post(
                f"{server.url}/v1/inference",
                files={"file": study.read_bytes()},
                timeout=120,
                verify=trust,
            )
        except Exception as exc:  # reported by the test, not lost in the thread
            result["error"] = exc

    with mis_server(tmp_path, overrides, verify=trust, nofile=(DESCRIPTORS, DESCRIPTORS)) as server:
        thread = threading.Thread(target=post, daemon=True)
        thread.start()
        wait_until((tmp_path / "started").exists, 30, "the MAP to start")
        flood = open_idle(server, FLOOD)  # connected, and not a byte of TLS
        flooded = time.monotonic()
        try:
            (tmp_path / "release").write_text("go")  # the study goes on under the flood
            thread.join(120)
            assert "error" not in result, result.get("error")
            response = result["response"]
            assert isinstance(response, httpx.Response)
            assert_whole(response, files)
            server.wait_until_clean(30)
            # every one is closed: beyond the bound at once, the rest when their handshake
            # has not begun within the header timeout (not the event loop's 60 s)
            closings = Closings(flood)
            window = max(flooded + 3 * HEAD_TIMEOUT - time.monotonic(), 2.0)  # a slow study
            closings.closed_within(window, until_all=True)
            assert time.monotonic() - flooded < 45  # the event loop's own bound is 60 s
            assert not closings.open, f"{len(closings.open)} unstarted handshakes still open"
        finally:
            for sock in flood:
                sock.close()
        assert httpx.get(f"{server.url}/healthz", verify=trust, timeout=10).status_code == 200
        log = server.log_text()
        assert "new connection(s) at once" in log
        assert "Too many open files" not in log
