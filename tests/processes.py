"""Checking on real processes from tests."""

from __future__ import annotations

import os
import time
from pathlib import Path


def is_alive(pid: int, grace: float = 2.0) -> bool:
    """Whether `pid` still runs, waiting up to `grace` seconds for a SIGKILL already sent to land.

    A zombie counts as gone: it has exited and only waits for its parent to reap it.
    """
    deadline = time.monotonic() + grace
    while True:  # looks at least once, even with no grace
        try:
            os.kill(pid, 0)
            state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        except (ProcessLookupError, FileNotFoundError):
            return False
        if state == "Z":
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.01)
