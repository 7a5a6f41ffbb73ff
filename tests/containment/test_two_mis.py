"""Two MIS on one payload folder (process backend, real servers, the unprivileged user): a MIS
that starts beside a running one leaves its study alone, and still sweeps what a killed MIS
left behind."""

from __future__ import annotations

import io
import signal
import threading
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness.servers import Server, ServerFactory
from tests.harness.wait import wait_until
from tests.nonroot import NonRoot
from tests.zips import make_zip

pytestmark = pytest.mark.slow  # see pyproject.toml: more than a few seconds


def shared(payload: Path) -> dict[str, Any]:
    """Overrides for a MIS on the shared `payload` folder whose MAP may wait a minute."""
    return {"server": {"payload_dir": str(payload)}, "map": {"timeout_seconds": 60}}


def start_study(
    server: Server, work: Path, results: list[httpx.Response | None]
) -> threading.Thread:
    """A study whose MAP waits until `work/release` exists; its response lands in `results`."""
    body = make_zip(work / "in.zip", {"_mode": b"wait", "scan.dcm": b"patient"}).read_bytes()

    def post() -> None:
        try:
            response: httpx.Response | None = httpx.post(
                f"{server.url}/v1/inference",
                content=body,
                headers={"Content-Type": "application/zip"},
                timeout=90,
            )
        except httpx.TransportError:  # its server was killed
            response = None
        results.append(response)

    thread = threading.Thread(target=post)
    thread.start()
    wait_until((work / "started").exists, 30, "the MAP to start")
    return thread


def test_a_second_mis_sweeps_only_what_a_dead_one_left(
    nonroot: NonRoot, mis_server: ServerFactory
) -> None:
    first, killed, second = nonroot.workdir("a"), nonroot.workdir("c"), nonroot.workdir("b")
    payload = first / "payload"
    with mis_server(first, shared(payload), nonroot=nonroot) as one:
        results: list[httpx.Response | None] = []
        running = start_study(one, first, results)
        live = one.leftovers()
        assert len(live) == 1

        with mis_server(killed, shared(payload), nonroot=nonroot) as doomed:
            start_study(doomed, killed, [])
            left = sorted(set(doomed.leftovers()) - set(live))
            doomed.process.send_signal(signal.SIGKILL)
            doomed.process.wait()
        assert len(left) == 1
        assert (payload / left[0] / "input" / "scan.dcm").exists()

        with mis_server(second, shared(payload), nonroot=nonroot) as other:
            assert "swept 1 leftover workspace(s)" in other.log_text()
            assert other.leftovers() == live  # the killed MIS's is gone, the live one's kept
            (first / "release").write_text("go")
            running.join(60)
        answer = results[0]
        assert answer is not None
        assert answer.status_code == 200, answer.text
        with zipfile.ZipFile(io.BytesIO(answer.content)) as answer_zip:
            assert answer_zip.read("scan.dcm") == b"patient"
        wait_until(lambda: one.leftovers() == [], 10, "the first MIS to clean up")
