"""Deleting one workspace so that whatever a failure leaves is still marked.

Everything but the marker goes first and the marker last, so a deletion cut short leaves a
marked workspace, swept by this MIS or the next once its owner is gone; a folder that keeps
filling while it is emptied is emptied again, a bounded number of times.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

from mis_adapters.open_flags import DIR_OPEN, NEW_FILE
from mis_adapters.storage.layout import WORKSPACE_MARKER as MARKER
from mis_adapters.storage.layout import WORKSPACE_MARKER_MODE as MARKER_MODE
from mis_adapters.storage.remove import make_writable, remove_entry

_REFILLS = 100  # times a workspace may fill again while being emptied


def remove_workspace(root: Path, name: str) -> None:
    """Delete the workspace `name` of the payload folder `root`: all but the marker, then the
    marker, then the folder. A workspace that is already gone is no error."""
    try:
        root_fd = os.open(root, DIR_OPEN)
    except FileNotFoundError:
        return
    try:
        try:
            folder = os.open(name, DIR_OPEN, dir_fd=root_fd)
        except FileNotFoundError:
            return
        try:
            make_writable(folder)
            _empty(folder, keep=MARKER)
            os.unlink(MARKER, dir_fd=folder)
            try:
                _rmdir_emptying(root_fd, name, folder)
            except OSError:
                # never leave an unmarked leftover: mark it again, for the next sweep
                with contextlib.suppress(OSError):
                    _mark(folder)
                raise
        finally:
            os.close(folder)
    finally:
        os.close(root_fd)


def _mark(folder: int) -> None:
    """An (ownerless) marker again, with the marker's mode whatever the umask."""
    fd = os.open(MARKER, os.O_WRONLY | NEW_FILE, MARKER_MODE, dir_fd=folder)
    try:
        os.fchmod(fd, MARKER_MODE)
    finally:
        os.close(fd)


def _empty(folder: int, keep: str = "") -> None:
    for _ in range(_REFILLS):
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.name != keep]
        if not names:
            return
        for name in names:
            remove_entry(folder, name)
    raise OSError(errno.ENOTEMPTY, "the workspace kept filling while it was being deleted")


def _rmdir_emptying(root: int, name: str, folder: int) -> None:
    for _ in range(_REFILLS):
        try:
            os.rmdir(name, dir_fd=root)
            return
        except OSError as exc:
            if exc.errno != errno.ENOTEMPTY:
                raise
        _empty(folder)
    raise OSError(errno.ENOTEMPTY, "the workspace kept filling while it was being deleted")
