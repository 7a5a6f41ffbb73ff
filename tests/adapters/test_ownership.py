"""Who owns a workspace: a live MIS's lock keeps sweepers away, a dead one's is swept, and a
workspace made on another machine waits for its lease to run out."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from mis_adapters.storage import ownership
from mis_adapters.storage.ownership import MARKER, Heartbeat, claim, owner_alive
from tests.built import local_storage
from tests.harness.wait import wait_until

HOLDER = """
import sys, anyio
from pathlib import Path
from mis_app.bootstrap import build_storage
from mis_app.settings import Settings
settings = {"server": {"payload_dir": sys.argv[1]}, "map": {"command": ["true"]}}
storage = build_storage(Settings.model_validate(settings))
anyio.run(storage.create, sys.argv[2])
print("holding", flush=True)
sys.stdin.read()  # until the test lets go or kills it
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Another MIS process, alive, in the middle of request 'live'."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "payload"), "live"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"holding\n"
    yield process
    process.kill()
    process.wait()


def test_a_live_owners_workspace_is_left_alone_and_a_killed_ones_is_swept(
    tmp_path: Path, holder: subprocess.Popen[bytes]
) -> None:
    root = tmp_path / "payload"
    (root / "live" / "input" / "scan.dcm").write_bytes(b"in use")
    storage = local_storage(root)
    assert anyio.run(storage.sweep) == 0
    assert (root / "live" / "input" / "scan.dcm").read_bytes() == b"in use"
    assert owner_alive(root / "live")

    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert not owner_alive(root / "live")
    assert anyio.run(storage.sweep) == 1
    assert list(root.iterdir()) == []


def test_a_process_never_sweeps_its_own_workspaces(tmp_path: Path) -> None:
    storage = local_storage(tmp_path / "payload")
    workspace = anyio.run(storage.create, "mine")
    assert anyio.run(storage.sweep) == 0
    assert Path(workspace.input_dir).is_dir()
    anyio.run(storage.delete, workspace)


def marker_from_another_machine(folder: Path, age: float) -> None:
    folder.mkdir(parents=True)
    (folder / "input").mkdir()
    owner = {"instance": "x", "boot": "another-boot-id", "pid": 1, "host": "elsewhere"}
    (folder / MARKER).write_text(json.dumps(owner))
    then = time.time() - age
    os.utime(folder / MARKER, (then, then))


def test_another_machines_workspace_is_swept_only_after_its_lease(tmp_path: Path) -> None:
    root = tmp_path / "payload"
    marker_from_another_machine(root / "fresh", age=1)
    marker_from_another_machine(root / "stale", age=ownership.LEASE_SECONDS + 5)
    storage = local_storage(root)
    assert anyio.run(storage.sweep) == 1
    assert sorted(p.name for p in root.iterdir()) == ["fresh"]
    assert owner_alive(root / "fresh")


def test_a_workspace_whose_lease_runs_out_later_is_swept_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ownership, "LEASE_SECONDS", 1.0)
    root = tmp_path / "payload"
    marker_from_another_machine(root / "remote", age=0)
    storage = local_storage(root)
    assert anyio.run(storage.sweep) == 0
    assert (root / "remote").exists()
    wait_until(lambda: not (root / "remote").exists(), 10, "the later sweep")


def test_the_heartbeat_renews_held_markers(tmp_path: Path) -> None:
    folder = tmp_path / "ws"
    folder.mkdir()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    held = claim(fd)
    os.close(fd)
    long_ago = time.time() - 3600
    os.utime(folder / MARKER, (long_ago, long_ago))
    beats = Heartbeat(interval=0.05)
    beats.add("ws", held)
    try:
        wait_until(lambda: (folder / MARKER).stat().st_mtime > long_ago + 3000, 5, "a beat")
    finally:
        assert beats.pop("ws") is held
        held.release()
    owner = json.loads((folder / MARKER).read_text())
    assert owner["pid"] == os.getpid()
    assert owner["boot"] == ownership.BOOT
