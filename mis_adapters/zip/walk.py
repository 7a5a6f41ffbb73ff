"""Walking the MAP's output as untrusted data: never through a link, at any level, at any moment.

Every folder and file is opened relative to its parent's open descriptor with `O_NOFOLLOW`, so
a folder swapped for a link while it is walked (or zipped) yields nothing from outside: the
open fails and the entry is left out, like any link the MAP wrote. Links, pipes, sockets and
devices are left out; everything else either comes out or stops the walk with
`OutputProblem` (a file MIS cannot read, a name that is not UTF-8, a tree too deep). What the
names may be, and how many, is `budget.py`'s to judge.

Memory follows the widest folder and the depth, never the number of files: `scan` runs the
walk once to find problems before anything is sent, and the zip runs it again.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import NamedTuple

from mis_adapters.open_flags import DIR_OPEN
from mis_adapters.zip.errors import OutputProblem
from mis_adapters.zip.names import MAX_DEPTH

# O_NONBLOCK: a FIFO swapped in does not block the open; O_NOCTTY: a tty swapped in does not
# become MIS's controlling terminal (the type is checked once the file is open)
_FILE_OPEN = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY
_GONE = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR)  # removed, or swapped for a link or file


class Member(NamedTuple):
    """A regular file (with `fd` open for reading, owned by the consumer) or an empty folder
    (`fd` is None; `name` ends with "/"); `encoded`: its name in UTF-8. (A tuple: one is made
    per file and folder, twice, and a tuple is made in a fraction of a frozen class's time.)"""

    name: str
    fd: int | None
    info: os.stat_result
    encoded: bytes


def open_top(folder: Path) -> int:
    """The output folder itself, which must be a real folder (not a link, a file, or gone)."""
    try:
        return os.open(folder, DIR_OPEN)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # what it is, for the message only
            kind = "a symbolic link" if folder.is_symlink() else "a file"
            raise OutputProblem(f"it is {kind}, not a folder") from None
        if exc.errno == errno.ENOENT:
            raise OutputProblem("it is gone") from None
        if exc.errno == errno.EACCES:
            raise OutputProblem("it cannot be read (permission denied)") from None
        raise


class Walker:
    """Iterates the members under the open folder `top` (not closed here): each folder's
    files in name order, then its subfolders in name order."""

    def __init__(self, top: int) -> None:
        self.top = top
        self.left_out = 0

    def __iter__(self) -> Iterator[Member]:
        # (folder fd, its prefix, its subfolders not yet entered), from the top down
        stack: list[tuple[int, str, Iterator[str]]] = []
        try:
            folder: tuple[int, str] | None = (os.open(".", DIR_OPEN, dir_fd=self.top), "")
            while folder is not None:
                fd, prefix = folder
                stack.append((fd, prefix, iter(())))
                subfolders = yield from self._folder(fd, prefix, len(stack) - 1)
                stack[-1] = (fd, prefix, iter(subfolders))
                folder = self._next_folder(stack)
        finally:
            for held, _, _ in stack:
                os.close(held)

    def _next_folder(self, stack: list[tuple[int, str, Iterator[str]]]) -> tuple[int, str] | None:
        """The next folder to enter, depth first; folders left behind are closed."""
        while stack:
            parent, prefix, remaining = stack[-1]
            for name in remaining:
                child = self._open_folder(parent, name, len(stack))
                if child is not None:
                    return child, f"{prefix}{name}/"
            os.close(stack.pop()[0])
        return None

    def _folder(self, fd: int, prefix: str, depth: int) -> Generator[Member, None, list[str]]:
        """Yield the folder's files (or itself when empty); return its subfolders' names. A
        file's path may have MAX_DEPTH components at most, as the reader's names (names.py)."""
        files, folders = self._list(fd)
        if files and depth >= MAX_DEPTH:
            raise OutputProblem(f"its files and folders are nested more than {MAX_DEPTH} deep")
        for name in files:
            member = self._open_file(fd, prefix, name)
            if member is not None:
                yield member
        if prefix and not files and not folders:
            yield Member(prefix, None, os.fstat(fd), _encoded(prefix))
        return folders

    def _list(self, fd: int) -> tuple[list[str], list[str]]:
        files: list[str] = []
        folders: list[str] = []
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.name)
                    elif entry.is_file(follow_symlinks=False):
                        files.append(entry.name)
                    else:
                        self.left_out += 1
        except PermissionError:
            raise OutputProblem("a folder in it cannot be read (permission denied)") from None
        files.sort()
        folders.sort()
        return files, folders

    def _open_file(self, parent: int, prefix: str, name: str) -> Member | None:
        path = prefix + name
        encoded = _encoded(path)
        try:  # (not through `_open`, a call less: this runs for every file, twice)
            fd = os.open(name, _FILE_OPEN, dir_fd=parent)
        except OSError as exc:
            self._left_out_or_raise(exc, "file")
            return None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # swapped for a pipe or device since it was listed
            os.close(fd)
            self.left_out += 1
            return None
        return Member(path, fd, info, encoded)

    def _open_folder(self, parent: int, name: str, depth: int) -> int | None:
        _encoded(name)
        if depth > MAX_DEPTH:
            raise OutputProblem(f"its folders are nested more than {MAX_DEPTH} deep")
        return self._open(parent, name, DIR_OPEN, "folder")

    def _open(self, parent: int, name: str, flags: int, kind: str) -> int | None:
        """`name` opened under `parent`, or None (counted as left out) when it is gone or has
        become a link since it was listed."""
        try:
            return os.open(name, flags, dir_fd=parent)
        except OSError as exc:
            self._left_out_or_raise(exc, kind)
            return None

    def _left_out_or_raise(self, exc: OSError, kind: str) -> None:
        """A `kind` that could not be opened: counted as left out when it is gone or has
        become a link since it was listed; otherwise what stops the walk."""
        if isinstance(exc, PermissionError):
            raise OutputProblem(f"a {kind} in it cannot be read (permission denied)") from None
        if exc.errno not in _GONE:
            raise exc
        self.left_out += 1


def _encoded(name: str) -> bytes:
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError:
        raise OutputProblem(
            "a file or folder name in it is not valid UTF-8 (names in the zip are UTF-8)"
        ) from None
