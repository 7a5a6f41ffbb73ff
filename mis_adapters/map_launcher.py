"""Starts the MAP so that it dies with MIS; the process backend runs every MAP through it.

On Linux, PR_SET_PDEATHSIG makes the kernel send SIGKILL to the MAP when MIS dies, even when
MIS itself was killed with SIGKILL. Processes the MAP started are in its process group, which
MIS records in the workspace and kills when it next starts.

    python -I -S map_launcher.py PARENT_PID PROGRAM [ARG...]

It imports nothing but the standard library, so it starts in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    parent, command = int(argv[0]), argv[1:]
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the sweep still finds it
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        return 1  # MIS died before the signal was armed
    os.execvp(command[0], command)
    return 1  # not reached: execvp replaces this process or raises


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
