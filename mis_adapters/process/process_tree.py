"""A process tree, through /proc: every process below some, and a kill that hits only the
process that was found (never one that reused its pid).

The supervisor uses it to kill everything the MAP started, and MIS to kill the orphans of a
MAP that killed its supervisor; so it is standard library only, like the supervisor, which
imports it as a script outside MIS's virtual environment.
"""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Iterable

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


def prctl(option: int, value: int) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option})")


# Each thread's children, in /proc/PID/task/TID/children (Linux's CONFIG_PROC_CHILDREN, on in
# every mainstream kernel): a process tree walked in a few reads, where scanning all of /proc
# costs one read per process on the machine (~1.5 ms for a hundred).
_CHILDREN_FILES = os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def children_of(pid: int) -> list[int]:
    """The children of `pid` (of every thread of it)."""
    if not _CHILDREN_FILES:
        return [child for child, parent in _parents().items() if parent == pid]
    found: list[int] = []
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found  # gone
    for tid in threads:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as children:
                found.extend(int(child) for child in children.read().split())
        except OSError:
            continue
    return found


def _parents() -> dict[int, int]:
    """Every visible process's parent, from a scan of /proc (where there are no children files)."""
    table: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                table[int(name)] = int(stat.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return table


def descendants(roots: Iterable[int]) -> dict[int, int]:
    """Every process below `roots`: pid → start time (to tell a reused pid apart)."""
    found: dict[int, int] = {}
    todo = list(roots)
    while todo:
        for pid in children_of(todo.pop()):
            started = start_time(pid)
            if pid not in found and started is not None:
                found[pid] = started
                todo.append(pid)
    return found


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return int(stat.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def kill_if_same(pid: int, started: int, sig: int) -> bool:
    """Send `sig` to `pid` if it is still the process that started at `started` (a pidfd
    keeps the pid from being reused between the check and the signal)."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False  # gone already
    try:
        if start_time(pid) != started:
            return False
        signal.pidfd_send_signal(pidfd, sig)
        return True
    except OSError:
        return False
    finally:
        os.close(pidfd)
