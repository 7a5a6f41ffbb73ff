"""The input tree's folders while an archive is unpacked into it: opened relative to open
parents, never through a link, made with the caller's mode whatever the umask."""

from __future__ import annotations

import contextlib
import errno
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from mis_adapters.open_flags import DIR_OPEN
from mis_adapters.zip.errors import BadArchive


class Folders:
    """Open folders of the input tree, created as needed: each entry's folder is opened
    relative to an open parent, never through a link and never resolved from the top again.
    The most recently used ones stay open (entries of one folder usually come together).
    A folder it makes gets `mode`."""

    def __init__(self, root: Path, mode: int, keep_open: int = 32) -> None:
        self._root = os.open(root, DIR_OPEN)
        self._open: OrderedDict[tuple[str, ...], int] = OrderedDict()
        self._keep_open = keep_open
        self._mode = mode
        self._chmod = umask_strips(mode)

    def enter(self, parts: Sequence[str]) -> int:
        key = tuple(parts)
        if not key:
            return self._root
        fd = self._open.get(key)
        if fd is not None:
            self._open.move_to_end(key)
            return fd
        depth = len(key) - 1
        while depth and key[:depth] not in self._open:
            depth -= 1
        fd = self._open[key[:depth]] if depth else self._root
        for index in range(depth, len(key)):
            child = self._open_or_make(fd, key[index])
            if index > depth:
                os.close(fd)  # an ancestor on the way: not kept
            fd = child
        self._open[key] = fd
        if len(self._open) > self._keep_open:
            os.close(self._open.popitem(last=False)[1])
        return fd

    def close(self) -> None:
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()
        os.close(self._root)

    def _open_or_make(self, parent: int, name: str) -> int:
        created = False
        try:
            try:
                fd = os.open(name, DIR_OPEN, dir_fd=parent)
            except FileNotFoundError:
                # another writer may make it meanwhile: a folder (fine) or a file (refused)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, self._mode, dir_fd=parent)
                    created = True
                fd = os.open(name, DIR_OPEN, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ELOOP):
                raise file_and_folder() from None
            raise
        if created and self._chmod:
            os.fchmod(fd, self._mode)  # whatever the umask
        return fd


def umask_strips(mode: int) -> bool:
    """Whether the process's umask takes bits off `mode` (then modes are set explicitly)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return bool(int(line.split()[1], 8) & mode)
    except (OSError, ValueError):
        pass
    return True


def file_and_folder() -> BadArchive:
    return BadArchive("The zip archive has a name that is both a file and a folder.")
