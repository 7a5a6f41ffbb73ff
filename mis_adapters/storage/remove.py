"""Deleting a tree that a MAP wrote, whatever it looks like.

`shutil.rmtree` recurses (a tree deeper than Python's recursion limit stops it), gives up on
folders the MAP made read-only (a `cp -a` of a read-only model folder), and resolves paths
again and again. This walks down with one open folder at a time and back up through `..`
(checked against the folder it came from, so a tree moved meanwhile is not followed
elsewhere): constant memory and descriptors for any depth, no recursion, no link ever
followed. Folders without write or search permission are given them (only ever on the open
folder itself, never through a name); names are whatever bytes they are; a file still being
written is unlinked like any other, and a folder that fills again while it is emptied is
emptied again.
"""

from __future__ import annotations

import errno
import os
import stat

from mis_adapters.open_flags import DIR_OPEN

_PATH_OPEN = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OWNER_ALL = stat.S_IRWXU
_REFILLS = 1000  # times folders may fill again while being emptied before deletion gives up


def remove_entry(parent: int, name: str) -> None:
    """Delete `name` (a file, a link, or a whole folder tree) from the open folder `parent`."""
    try:
        os.unlink(name, dir_fd=parent)
        return
    except FileNotFoundError:
        return
    except IsADirectoryError:
        pass
    except PermissionError:  # EPERM: what Linux answers for unlink() of a folder on some kernels
        if not _is_folder(parent, name):
            raise
    _remove_folder(parent, name)


def make_writable(fd: int) -> None:
    """Let the owner list, enter and change the open folder `fd` (a MAP may have left it
    read-only)."""
    mode = os.fstat(fd).st_mode
    if mode & _OWNER_ALL != _OWNER_ALL:
        os.fchmod(fd, stat.S_IMODE(mode) | _OWNER_ALL)


def open_folder(parent: int, name: str) -> int:
    """Open the folder `name` for emptying, giving it owner permissions first if it has none
    to read or search (through an O_PATH descriptor: the name is not resolved twice)."""
    try:
        return os.open(name, DIR_OPEN, dir_fd=parent)
    except PermissionError:
        pass
    handle = os.open(name, _PATH_OPEN, dir_fd=parent)
    try:
        mode = os.fstat(handle).st_mode
        # fchmod() refuses O_PATH descriptors; the /proc link acts on the very same inode
        os.chmod(f"/proc/self/fd/{handle}", stat.S_IMODE(mode) | _OWNER_ALL)
        return os.open(".", DIR_OPEN, dir_fd=handle)
    finally:
        os.close(handle)


def _is_folder(parent: int, name: str) -> bool:
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _remove_folder(parent: int, name: str) -> None:
    """Empty and remove the folder `name` of `parent`, depth first, one level open at a time."""
    fd = open_folder(parent, name)
    here = os.fstat(parent)
    # from the top: each open level's name and the identity of the folder holding it
    path: list[tuple[str, int, int]] = [(name, here.st_dev, here.st_ino)]
    refills = 0
    try:
        while path:
            make_writable(fd)
            sub = _unlink_until_folder(fd)
            if sub is not None:
                try:
                    child = open_folder(fd, sub)
                except OSError as exc:
                    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                        continue  # gone, or swapped for a file or link: the next pass unlinks it
                    raise
                here = os.fstat(fd)
                path.append((sub, here.st_dev, here.st_ino))
                os.close(fd)
                fd = child
                continue
            name_here, parent_dev, parent_ino = path.pop()
            up = os.open("..", DIR_OPEN, dir_fd=fd)
            os.close(fd)
            fd = up
            above = os.fstat(up)
            if (above.st_dev, above.st_ino) != (parent_dev, parent_ino):
                raise OSError(errno.ESTALE, "the folder was moved while it was being deleted")
            try:
                os.rmdir(name_here, dir_fd=up)
            except OSError as exc:
                if exc.errno != errno.ENOTEMPTY or refills >= _REFILLS:
                    raise
                refills += 1  # something wrote into it meanwhile: empty it again
                path.append((name_here, parent_dev, parent_ino))
                child = open_folder(up, name_here)
                os.close(fd)
                fd = child
    finally:
        os.close(fd)


def _unlink_until_folder(fd: int) -> str | None:
    """Unlink the folder's entries up to its first subfolder, and return that subfolder's name
    (None once only the folder itself is left)."""
    with os.scandir(fd) as entries:  # closing the scan rewinds `fd` for the next one
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                return entry.name
            try:
                os.unlink(entry.name, dir_fd=fd)
            except FileNotFoundError:
                pass
            except IsADirectoryError:  # replaced by a folder since it was listed
                return entry.name
    return None
