"""Checking on real processes from tests."""

from __future__ import annotations

import os
from pathlib import Path

from tests.harness.wait import settled


def is_alive(pid: int, grace: float = 2.0) -> bool:
    """Whether `pid` still runs, waiting up to `grace` seconds for a SIGKILL already sent to land.

    A zombie counts as gone: it has exited and only waits for its parent to reap it.
    """
    return settled(lambda: _running(pid), lambda running: not running, grace)


def _running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie, now."""
    try:
        os.kill(pid, 0)
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (ProcessLookupError, FileNotFoundError):
        return False
    return state != "Z"
