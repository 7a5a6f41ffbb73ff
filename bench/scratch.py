"""One journaled file system for the bench's runs, on the same disk, warmed up before it is used.

Why: on a journal-less ext4 (the root file system of the machines the bench was first run on)
the inode allocator skips inodes deleted in the last minutes and looks each one up in the
buffer cache, so creating 100,000 files right after 100,000 were deleted cost 30-55 s of kernel
time instead of 3.5 s (`perf`: `recently_deleted` under `__ext4_new_inode`), and whichever side
ran after another's clean-up lost. The runs share a journaled ext4 (as a Kubernetes volume
would be), in a sparse image on the same disk, through a loop device with direct I/O (no second
page cache). It is made whole before the first run (inode tables zeroed, 2 GiB written through): a
new file system made whoever came first pay for its set-up (830 MB received in 3.6 s instead
of 1.4 s; 100,000 files unpacked in 13.3 s instead of 6.2 s). Each run gets a folder of its own on it, removed
afterwards. Without root or the tools, folders in the work folder, and the results say so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

TOOLS = ("mkfs.ext4", "losetup", "mount", "umount")


def available() -> bool:
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in TOOLS)


def kind() -> str:
    """What the runs' folders are on, for the results."""
    if _DISK is not None:
        return "one journaled ext4 for all runs (sparse image, loop device, direct I/O, warmed up)"
    return "folders in the work folder (not root, or no mkfs.ext4)"


_DISK: Path | None = None  # the mounted file system, while `disk` holds it


@contextlib.contextmanager
def disk(work: Path, size: int, warm_up: int = 2 * 2**30) -> Iterator[None]:
    """The runs' file system, `size` bytes, for the block; without root, nothing."""
    global _DISK
    if not available():
        yield
        return
    image, point = work / "runs.img", work / "runs"
    image.unlink(missing_ok=True)
    with open(image, "wb") as sparse:
        sparse.truncate(size)
    # An inode per 8 KiB (room for 100,000s of small files); no discard on delete; inode
    # tables and journal zeroed now, not on first use: whoever first created files in a
    # block group waited for its zeroing (unzip of 100,000 files: 13.3 s, against 6.2 s)
    extended = "nodiscard,lazy_itable_init=0,lazy_journal_init=0"
    run("mkfs.ext4", "-q", "-F", "-i", "8192", "-E", extended, str(image))
    device = run("losetup", "--direct-io=on", "--find", "--show", str(image)).strip()
    try:
        point.mkdir(parents=True, exist_ok=True)
        run("mount", device, str(point))
        try:
            _write_through(point / "warm-up", warm_up)
            _DISK = point
            yield
        finally:
            _DISK = None
            run("umount", str(point))
    finally:
        run("losetup", "--detach", device)
        image.unlink(missing_ok=True)


@contextlib.contextmanager
def fresh(work: Path, name: str) -> Iterator[Path]:
    """An empty folder for one run (on the runs' file system while `disk` holds it), gone
    afterwards and its deletion written out."""
    folder = (_DISK or work) / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.sync()


def _write_through(path: Path, size: int) -> None:
    block = bytes(1024 * 1024)
    with open(path, "wb") as out:
        for _ in range(size // len(block)):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    path.unlink()
    os.sync()


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
