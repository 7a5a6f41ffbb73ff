"""Which MIS owns a workspace, so that a MIS sweeps only what a dead one left.

Several MIS may share one payload folder: a rolling update, replicas, a restart beside an old
process that still runs. Each workspace holds a marker file that says who made it
(`{"instance", "boot", "pid", "host"}`), and its owner holds two things for the request's
life:

- an exclusive `flock` on the marker. The kernel drops it when the owner dies, however it
  dies, so on one machine (one boot id) a free lock is proof of a dead owner. NFS and most
  shared file systems carry `flock` to other hosts too, but not all do;
- a heartbeat: the owner touches the marker every HEARTBEAT_SECONDS. A workspace made on
  another machine is taken as dead only when its lock is free and its heartbeat is older than
  LEASE_SECONDS (clocks are assumed to agree within that).

A sweeper takes the lock before it deletes anything and holds it until the marker is gone,
so two sweepers never delete one workspace, and a live owner's lock keeps both away.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Literal

import attrs

from mis_adapters.storage.layout import WORKSPACE_MARKER as MARKER
from mis_adapters.storage.layout import WORKSPACE_MARKER_MODE as MARKER_MODE

HEARTBEAT_SECONDS = 10.0
LEASE_SECONDS = 60.0
_MARKER_READ = 4096
_OPEN = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


INSTANCE = uuid.uuid4().hex  # this process
BOOT = _boot_id()  # this machine, this boot: where a free flock means a dead owner


class Claim:
    """A held marker: the lock is held until `release`."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def beat(self) -> None:
        with contextlib.suppress(OSError):
            os.utime(self.fd)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # drops the lock
            self.fd = -1


def claim(folder: int) -> Claim:
    """Make the marker in the new, open workspace folder `folder`, locked by this process."""
    fd = os.open(MARKER, _OPEN | os.O_CREAT | os.O_EXCL, MARKER_MODE, dir_fd=folder)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a sweeper may hold it for a moment; it will let go
        os.fchmod(fd, MARKER_MODE)
        owner = {
            "instance": INSTANCE,
            "boot": BOOT,
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        os.write(fd, json.dumps(owner).encode())
    except BaseException:
        os.close(fd)
        raise
    return Claim(fd)


@attrs.frozen
class Look:
    """What a sweeper found: `state` is "none" (no marker: not a workspace, or one being made
    or finished), "live" (its owner holds the lock), "lease" (maybe alive on another machine
    until `lease_end`) or "dead" (abandoned; `claim` now holds its lock)."""

    state: Literal["none", "live", "lease", "dead"]
    claim: Claim | None = None
    lease_end: float = 0.0


def look(folder: int, now: float | None = None) -> Look:
    """Who owns the open folder `folder`; takes the lock when the owner is dead."""
    try:
        fd = os.open(MARKER, _OPEN, dir_fd=folder)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENXIO, errno.EISDIR):
            return Look("none")  # no marker, or not one MIS made
        if exc.errno in (errno.EACCES, errno.EPERM):
            return Look("live")  # another user's: never this MIS's to judge
        raise
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return Look("live")
    except BaseException:
        os.close(fd)
        raise
    if BOOT and _owner_boot(fd) == BOOT:
        return Look("dead", Claim(fd))  # same machine: the free lock proves the owner is gone
    lease_end = os.fstat(fd).st_mtime + LEASE_SECONDS
    if (time.time() if now is None else now) >= lease_end:
        return Look("dead", Claim(fd))
    os.close(fd)
    return Look("lease", lease_end=lease_end)


def owner_alive(folder: Path) -> bool:
    """Whether the workspace `folder` belongs to a MIS that is (or may be) alive.

    For other sweepers at start-up (a backend killing what dead MAPs left). Never call it on a
    workspace this process holds: on file systems that emulate flock with POSIX locks, closing
    any descriptor of the marker drops the holder's lock.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        found = look(fd)
    finally:
        os.close(fd)
    if found.claim is not None:
        found.claim.release()
    return found.state in ("live", "lease")


def _owner_boot(fd: int) -> str:
    try:
        owner = json.loads(os.pread(fd, _MARKER_READ, 0))
        return str(owner.get("boot", "")) if isinstance(owner, dict) else ""
    except (ValueError, OSError):
        return ""  # an empty marker (being made, or from an older MIS) or a damaged one


class Heartbeat:
    """Touches the markers of the workspaces this process holds, from a daemon thread that
    runs only while there are some."""

    def __init__(self, interval: float = HEARTBEAT_SECONDS) -> None:
        self.interval = interval
        self._claims: dict[str, Claim] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def add(self, key: str, held: Claim) -> None:
        with self._lock:
            self._claims[key] = held
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mis-heartbeat", daemon=True)
                self._thread.start()

    def pop(self, key: str) -> Claim | None:
        with self._lock:
            return self._claims.pop(key, None)

    def holds(self, key: str) -> bool:
        with self._lock:
            return key in self._claims

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                if not self._claims:
                    self._thread = None
                    return
                held = list(self._claims.values())
            for one in held:
                one.beat()
