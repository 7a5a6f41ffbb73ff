"""How many threads MIS's own CPU-bound steps (unpacking the input, packing the output) use.

One setting, `server.workers`, for both: 0 (the default) is "auto", the CPUs this process may
use, up to `AUTO_CAP`; 1 is the serial code path, no pool at all.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

# Auto stops here: each request's threads multiply by server.max_concurrent, packing holds a
# window of pieces per worker, and a gigabit link drains a level-1 deflate on one or two cores.
AUTO_CAP = 4


def available_cpus() -> int:
    """The CPUs this process may use: its affinity, and its cgroup's quota where there is one."""
    cpus = len(os.sched_getaffinity(0))
    with contextlib.suppress(OSError, ValueError):
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    return cpus


def worker_count(setting: int) -> int:
    """Threads to use for `setting` (server.workers): itself when positive, else auto."""
    return setting if setting > 0 else min(AUTO_CAP, available_cpus())
