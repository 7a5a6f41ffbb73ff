"""Deleting workspaces: deep trees, names that are not UTF-8, files still being written, and a
failure halfway that leaves the workspace marked for the next sweep. Read-only trees are
tested as the unprivileged user in tests/containment/test_storage_nonroot.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from mis_adapters.storage import deletion
from mis_adapters.storage.deletion import remove_workspace
from mis_adapters.storage.volume import MARKER
from tests.built import local_storage
from tests.harness.wait import wait_until

pytestmark = pytest.mark.anyio


def deep_tree(top: Path, depth: int) -> None:
    """`depth` nested folders (far past PATH_MAX as a path), a file at every 100th level."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for level in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
            if level % 100 == 0:
                os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
    finally:
        os.close(fd)


async def test_a_tree_deeper_than_the_recursion_limit_is_deleted(tmp_path: Path) -> None:
    storage = local_storage(tmp_path / "payload")
    workspace = await storage.create("deep")
    deep_tree(Path(workspace.output_dir), sys.getrecursionlimit() * 3)
    await storage.delete(workspace)
    assert list((tmp_path / "payload").iterdir()) == []


async def test_names_that_are_not_utf8_are_deleted(tmp_path: Path) -> None:
    storage = local_storage(tmp_path / "payload")
    workspace = await storage.create("bytes")
    out = os.fsencode(workspace.output_dir)
    os.makedirs(os.path.join(out, b"s\xe9rie-\xff"))
    for name in (b"\xff\xfe.dcm", b"s\xe9rie-\xff/\x80\x81", b"new\nline"):
        with open(os.path.join(out, name), "wb") as handle:
            handle.write(b"x")
    await storage.delete(workspace)
    assert list((tmp_path / "payload").iterdir()) == []


WRITER = """
import os, sys, time
folder = sys.argv[1]
log = open(os.path.join(folder, "growing.log"), "ab")
os.makedirs(os.path.join(folder, "spool"), exist_ok=True)
n = 0
print("writing", flush=True)
while True:
    log.write(b"x" * 65536)
    if n % 20 == 0:
        try:
            os.makedirs(os.path.join(folder, "spool", str(n)), exist_ok=True)
            open(os.path.join(folder, "spool", str(n), "part"), "wb").close()
        except OSError:
            pass  # its folder was deleted under it
    n += 1
    time.sleep(0.001)
"""


def test_files_still_being_written_are_deleted(tmp_path: Path) -> None:
    """A process keeps appending to a file and adding folders while the workspace goes."""
    storage = local_storage(tmp_path / "payload")
    workspace = anyio.run(storage.create, "growing")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, workspace.output_dir], stdout=subprocess.PIPE
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"writing\n"
        wait_until(lambda: len(os.listdir(Path(workspace.output_dir) / "spool")) > 3)
        anyio.run(storage.delete, workspace)
        assert not Path(workspace.root).exists()
        assert writer.poll() is None  # it was writing all along
    finally:
        writer.kill()
        writer.wait()


async def test_a_failure_halfway_leaves_the_workspace_marked_and_the_sweep_finishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "payload"
    storage = local_storage(root)
    workspace = await storage.create("half")
    (Path(workspace.output_dir) / "result.dcm").write_bytes(b"patient")
    real_remove = deletion.remove_entry

    def failing(parent: int, name: str) -> None:
        if name == "output":
            raise PermissionError(13, "cannot delete")
        real_remove(parent, name)

    monkeypatch.setattr(deletion, "remove_entry", failing)
    with pytest.raises(PermissionError):
        await storage.delete(workspace)
    assert (Path(workspace.root) / MARKER).exists()
    assert (Path(workspace.output_dir) / "result.dcm").exists()

    monkeypatch.setattr(deletion, "remove_entry", real_remove)
    assert await local_storage(root).sweep() == 0  # still claimed: its owner retries
    held = storage._held.pop("half")
    assert held is not None
    held.release()  # as the kernel lets go of the lock when its owner dies
    assert await local_storage(root).sweep() == 1
    assert list(root.iterdir()) == []


def test_removing_a_workspace_that_is_gone_is_no_error(tmp_path: Path) -> None:
    remove_workspace(tmp_path / "missing", "x")
    (tmp_path / "payload").mkdir()
    remove_workspace(tmp_path / "payload", "x")


@pytest.mark.slow
async def test_a_wide_tree_is_deleted(tmp_path: Path) -> None:
    """Many sibling folders: each is entered from a fresh scan of its parent."""
    storage = local_storage(tmp_path / "payload")
    workspace = await storage.create("wide")
    for n in range(300):
        sub = Path(workspace.output_dir) / f"s{n}"
        sub.mkdir()
        for m in range(10):
            (sub / str(m)).write_bytes(b"x")
    await storage.delete(workspace)
    assert list((tmp_path / "payload").iterdir()) == []
