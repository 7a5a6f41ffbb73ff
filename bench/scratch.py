"""A fresh file system for each run of the bench, so that no side inherits another's deletions.

Why: on a journal-less ext4 (the root file system of the machines the bench was first run on)
the inode allocator skips inodes deleted in the last minutes and looks each one up in the
buffer cache, so creating 100,000 files right after 100,000 were deleted cost 30-55 s of kernel
time instead of 3.5 s (`perf`: `recently_deleted` under `__ext4_new_inode`), and whichever side
ran after another's clean-up lost. Each run gets its own journaled ext4 (as a Kubernetes volume
would be), in a sparse image on the same disk, through a loop device with direct I/O (no second
page cache). Without root or the tools, a folder in the work folder, and the results say so.
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
    if available():
        return "a fresh journaled ext4 for each run (sparse image, loop device, direct I/O)"
    return "one folder in the work folder, shared by every run (not root, or no mkfs.ext4)"


@contextlib.contextmanager
def fresh(work: Path, name: str, size: int) -> Iterator[Path]:
    """An empty folder on a file system of its own of `size` bytes, gone afterwards."""
    if not available():
        folder = work / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return
    image, point = work / f"{name}.img", work / name
    image.unlink(missing_ok=True)
    with open(image, "wb") as sparse:
        sparse.truncate(size)
    # an inode per 8 KiB (room for 100,000s of small files); no discard on delete; no lazy
    # inode-table zeroing in the background during the run (noinit_itable)
    run("mkfs.ext4", "-q", "-F", "-i", "8192", "-E", "nodiscard", str(image))
    device = run("losetup", "--direct-io=on", "--find", "--show", str(image)).strip()
    try:
        point.mkdir(parents=True, exist_ok=True)
        run("mount", "-o", "noinit_itable", device, str(point))
        try:
            yield point
        finally:
            run("umount", str(point))
    finally:
        run("losetup", "--detach", device)
        image.unlink(missing_ok=True)


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
