"""MIS as a child subreaper: what a MAP leaves behind once it killed its supervisor.

The supervisor keeps every process the MAP starts below itself, but without the sandbox the
MAP runs as MIS's user and can kill the supervisor. Its processes, however they left their
session and scrubbed their environment, are then orphans; with MIS a child subreaper
(Linux's `PR_SET_CHILD_SUBREAPER`) they become MIS's own children instead of init's, and
when a run ends MIS kills and reaps every child of its own that started during that run, is
no live supervisor and is not in MIS's own session (what MIS started for itself meanwhile,
such as another request's unpacking workers).

Reaping waits only for the pids killed here (`waitid(P_PID, pid, WNOHANG)`), never for any
child (`waitpid(-1)`), so the exit status of the children the event loop waits for (the
supervisors) is never taken from it.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Collection

import anyio
from loguru import logger

from mis_adapters.process.process_tree import (
    PR_SET_CHILD_SUBREAPER,
    children_of,
    descendants,
    kill_if_same,
    prctl,
    start_time,
)

_POLL = 0.01  # seconds between looks while SIGKILLed orphans finish dying


def become_subreaper() -> bool:
    """Make this process a child subreaper (Linux only); False where it cannot be."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl(PR_SET_CHILD_SUBREAPER, 1)
    except OSError as exc:
        logger.warning("MIS could not become a child subreaper ({})", os.strerror(exc.errno or 0))
        return False
    return True


def now_ticks() -> int:
    """The time as /proc/PID/stat's start time counts it (clock ticks since boot)."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * os.sysconf("SC_CLK_TCK"))


def _orphans(since: int, spare: Collection[int]) -> tuple[dict[int, int], dict[int, int]]:
    """Our children that started at `since` or later and are not in `spare`, and every
    process below them: pid → start time (to tell a reused pid apart)."""
    mine: dict[int, int] = {}
    session = os.getsid(0)
    for pid in children_of(os.getpid()):
        started = start_time(pid)
        if started is None or started < since or pid in spare:
            continue
        if not _in_session(pid, session):
            mine[pid] = started
    return mine, descendants(mine)


def _in_session(pid: int, session: int) -> bool:
    """Whether `pid` is in MIS's own session: then MIS started it for itself (unpacking
    workers of another request, say). A supervisor starts in a session of its own, and
    nothing below it can join MIS's (setsid only makes new ones), so no orphan of a MAP is."""
    try:
        return os.getsid(pid) == session
    except OSError:
        return False  # gone: the kill below finds nothing


def _reaped(pid: int) -> bool:
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG) is not None
    except ChildProcessError:
        return True  # not (or no longer) ours to wait for


async def reap_orphans(since: int, spare: Collection[int], within: float) -> int:
    """Kill and reap the orphans that reached MIS since `since` (ticks), sparing the live
    supervisors in `spare`; gives up after `within` seconds. Returns how many were killed."""
    killed: set[int] = set()
    with anyio.move_on_after(within) as scope:
        while True:
            mine, beneath = _orphans(since, spare)
            if not mine:
                return len(killed)
            # those beneath first: they become MIS's as their parents go
            for pid, started in [*beneath.items(), *mine.items()]:
                kill_if_same(pid, started, signal.SIGKILL)
            killed.update(mine, beneath)
            reaped = [_reaped(pid) for pid in mine]  # every one, not up to the first left
            if not all(reaped):
                await anyio.sleep(_POLL)
    if scope.cancelled_caught:
        logger.warning("processes left by a MAP did not die within {} s", within)
    return len(killed)
