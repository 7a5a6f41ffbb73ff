"""The process backend's last-resort kills, for when a supervisor could not do its job.

Apart from the backend because both a run that ends badly and the sweep after a crashed
MIS use them, and neither needs any of the backend's state.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from anyio.abc import Process


def kill_group(process: Process) -> None:
    """SIGKILL what is left of the supervisor's process group (it leads one: MIS starts it in
    a session of its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def kill_marked(job_id: str) -> bool:
    """SIGKILL every process (of this user) whose environment carries MONAI_JOBID=`job_id`."""
    marker = f"MONAI_JOBID={job_id}".encode()
    killed = False
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
                killed = True
        except (OSError, ValueError):
            continue
    return killed
