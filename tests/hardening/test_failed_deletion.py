"""A workspace whose deletion fails is retried in the background until it goes.

Found: a deletion that failed (EMFILE under a connection flood) left the workspace on disk
until the next restart, and `/v1/status` said `deleting: 0`. Here MIS runs as its
unprivileged user and the output holds a folder of another user's (root's) that MIS may read
but not empty, as a MAP running as another user can leave: the response is whole, the
deletion fails and is retried, `/v1/status`, `/metrics` and `/readyz` say so, and once the
folder is MIS's again the workspace goes without a restart.
"""

from __future__ import annotations

import io
import os
import threading
import zipfile

import httpx
import pytest

from tests.e2e.server import unlabelled_metrics
from tests.harness.servers import Server, ServerFactory
from tests.harness.unavailable import require_root
from tests.harness.wait import wait_until
from tests.nonroot import NonRoot
from tests.zips import make_zip

pytestmark = pytest.mark.slow


def status(server: Server) -> dict[str, object]:
    return dict(httpx.get(f"{server.url}/v1/status", timeout=10).json())


def test_a_deletion_that_fails_is_retried_and_counted_until_the_fault_clears(
    nonroot: NonRoot,
    mis_server: ServerFactory,
) -> None:
    require_root("a folder of another user's in the workspace, which MIS may not delete")
    work = nonroot.workdir("deletion")
    overrides = {"server": {"stuck_deletion_seconds": 1}, "map": {"timeout_seconds": 30}}
    archive = make_zip(work / "in.zip", {"_mode": b"wait", "a.txt": b"study"})
    with mis_server(work, overrides, nonroot=nonroot) as server:
        result: dict[str, httpx.Response] = {}

        def post() -> None:
            result["response"] = httpx.post(
                f"{server.url}/v1/inference", files={"file": archive.read_bytes()}, timeout=60
            )

        thread = threading.Thread(target=post, daemon=True)
        thread.start()
        wait_until((work / "started").exists, 30, "the MAP to start")
        (workspace,) = server.leftovers()
        locked = server.payload_dir / workspace / "output" / "locked"
        locked.mkdir(mode=0o755)  # root's: MIS's user may list and read it, not change it
        (locked / "result.txt").write_bytes(b"kept")
        (work / "release").write_text("go")
        thread.join(60)

        response = result["response"]
        assert response.status_code == 200, response.text[:300]
        with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
            assert zf.read("locked/result.txt") == b"kept"
            assert zf.read("a.txt") == b"study"

        wait_until(
            lambda: unlabelled_metrics(server)["mis_cleanup_failures"] >= 1, 10, "a failed deletion"
        )
        assert server.leftovers() == [workspace]
        assert status(server)["deleting"] == 1  # still pending: retried, not forgotten
        assert status(server)["state"] == "idle"
        assert unlabelled_metrics(server)["mis_failed_deletions_retrying"] == 1
        wait_until(lambda: httpx.get(f"{server.url}/readyz").status_code == 503, 10, "503")
        error = httpx.get(f"{server.url}/readyz").json()["error"]
        assert "could not be deleted" in error["message"]
        assert "server.stuck_deletion_seconds" in error["message"]
        wait_until(lambda: unlabelled_metrics(server)["mis_cleanup_failures"] >= 2, 10, "a retry")

        for path in (locked, locked / "result.txt"):  # the fault clears
            os.chown(path, nonroot.uid, nonroot.uid)
        wait_until(lambda: server.leftovers() == [], 20, "the retry to delete the workspace")
        assert status(server)["deleting"] == 0
        assert unlabelled_metrics(server)["mis_failed_deletions_retrying"] == 0
        assert httpx.get(f"{server.url}/readyz").status_code == 200
    log = server.log_text()
    assert "could not delete the workspace: PermissionError" in log
    assert "retrying the deletion in 1s" in log
    assert "retrying the deletion in 2s" in log
