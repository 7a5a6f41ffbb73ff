"""Attack: a flood of idle TCP connections (no byte, no token) while a study runs.

Found against a MIS with 1,024 descriptors (RLIMIT_NOFILE): 1,100 idle connections took them
all. The study in flight, whose MAP had succeeded, got `500 internal_error` (EMFILE while its
output was walked), its workspace stayed on disk until the next restart, and new connections
got nothing, with nothing logged.

The fix this test expects: MIS raises its soft descriptor limit to the hard one, accepts only
as many connections as leave a running request the descriptors it needs, closes new ones
beyond that at once (counted in /metrics, logged), and closes idle ones after
`server.header_timeout_seconds`. Here MIS starts with a soft limit of 256 and a hard one of
1,024, as a process started from a shell with the usual soft limit would.
"""

from __future__ import annotations

import io
import os
import resource
import select
import socket
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import unlabelled_metrics
from tests.harness.servers import Server, ServerFactory
from tests.harness.wait import wait_until
from tests.zips import make_zip

pytestmark = pytest.mark.slow

DESCRIPTORS = 1024
FLOOD = 1100
HEAD_TIMEOUT = 10.0  # the default; what the header timeout closes comes after it
MiB = 1024 * 1024


def study_files() -> dict[str, bytes]:
    """An output that needs descriptors to send: large files (held open while they are sent),
    a deep folder chain (one descriptor per level while walked) and a few hundred small files."""
    files = {f"large/{n}.bin": os.urandom(MiB + MiB // 2) for n in range(4)}
    files.update({f"small/{n // 50}/{n}.txt": b"%d\n" % n * 40 for n in range(300)})
    files["/".join(f"d{n}" for n in range(60)) + "/deep.txt"] = b"deep"
    return files


def post_in_background(server: Server, archive: Path) -> tuple[threading.Thread, dict[str, object]]:
    result: dict[str, object] = {}

    def post() -> None:
        try:
            result["response"] = httpx.post(
                f"{server.url}/v1/inference", files={"file": archive.read_bytes()}, timeout=120
            )
        except Exception as exc:  # reported by the test, not lost in the thread
            result["error"] = exc

    thread = threading.Thread(target=post, daemon=True)
    thread.start()
    return thread, result


def open_idle(server: Server, count: int) -> list[socket.socket]:
    port = int(server.url.rsplit(":", 1)[1])
    flood = []
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port))
        flood.append(sock)
    return flood


class Closings:
    """Which of the flood's connections the server has closed (the client sees EOF)."""

    def __init__(self, flood: list[socket.socket]) -> None:
        self.poller = select.poll()
        self.open = {sock.fileno() for sock in flood}
        for sock in flood:
            self.poller.register(sock, select.POLLIN)

    def closed_within(self, wait: float, until_all: bool = False) -> int:
        """How many more were closed within `wait` seconds (or until all are, `until_all`)."""
        closed = 0
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not (until_all and not self.open):
            for fd, _ in self.poller.poll(50):
                self.poller.unregister(fd)
                self.open.discard(fd)
                closed += 1
        return closed


def assert_whole(response: httpx.Response, files: dict[str, bytes]) -> None:
    assert response.status_code == 200, response.text[:500]
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        got = {name: zf.read(name) for name in zf.namelist() if not name.endswith("/")}
    for name, data in files.items():
        assert got[name] == data, name


def test_a_flood_of_idle_connections_cannot_starve_a_running_study(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < FLOOD + 200:  # the test holds the whole flood itself
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, FLOOD + 400), hard))
    overrides = {"server": {"header_timeout_seconds": HEAD_TIMEOUT}, "map": {"timeout_seconds": 60}}
    files = study_files()
    study = make_zip(tmp_path / "study.zip", {"_mode": b"wait", **files})
    nofile = (256, DESCRIPTORS)
    with mis_server(tmp_path, overrides, nofile=nofile) as server:
        assert f"raised the descriptor limit (RLIMIT_NOFILE) from 256 to {DESCRIPTORS}" in (
            server.log_text()
        )
        most = int(unlabelled_metrics(server)["mis_max_connections"])
        assert 0 < most < DESCRIPTORS - 256  # requests keep a reserve
        thread, result = post_in_background(server, study)
        wait_until((tmp_path / "started").exists, 30, "the MAP to start")

        flooded = time.monotonic()
        flood = open_idle(server, FLOOD)
        try:
            (tmp_path / "release").write_text("go")  # the study goes on under the flood
            # beyond the bound (the study's own connection is one of it): closed at once,
            # before the header timeout could close any
            closings = Closings(flood)
            refused_now = closings.closed_within(flooded + HEAD_TIMEOUT - 1 - time.monotonic())
            assert refused_now >= FLOOD - most
            assert len(closings.open) >= most - 2  # the rest are accepted
            thread.join(120)
            assert "error" not in result, result.get("error")
            response = result["response"]
            assert isinstance(response, httpx.Response)
            assert_whole(response, files)
            server.wait_until_clean(30)  # nothing of the study stays on disk
            # the idle rest goes after the header timeout
            closings.closed_within(2 * HEAD_TIMEOUT, until_all=True)
            assert not closings.open
        finally:
            for sock in flood:
                sock.close()

        counted = unlabelled_metrics(server)
        assert counted["mis_refused_connections_total"] >= FLOOD - most
        assert counted["mis_cleanup_failures"] == 0
        log = server.log_text()
        assert log.count("new connection(s) at once") == 1  # at most once a minute
        assert "Too many open files" not in log

        # the next study after the flood is served whole
        thread, result = post_in_background(server, make_zip(tmp_path / "next.zip", files))
        thread.join(120)
        response = result["response"]
        assert isinstance(response, httpx.Response)
        assert_whole(response, files)
        server.wait_until_clean(30)
