"""The supervisor's report as MIS reads it: how the MAP ended.

A module of its own because the report is the one file of a run that MIS trusts, and its
reading must stay careful: without the sandbox a MAP may have put anything in its place.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import attrs


@attrs.frozen
class Report:
    """How the MAP ended, as its supervisor wrote it."""

    code: int  # its exit code, or minus the signal that ended it
    peak_rss_kib: int


_REPORT_MOST = 4096  # bytes: the report is one short line


def read_report(path: Path) -> Report | None:
    """The supervisor's report, or None when it is missing or cut short (it was killed).

    Read as a regular file of MIS's own, never through a link, never blocking on a FIFO and
    never more than a line's worth: without the sandbox a MAP may have put anything there."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            return None
        ended = json.loads(os.read(fd, _REPORT_MOST))
        signum = int(ended["signal"])
        return Report(-signum if signum else int(ended["exit_code"]), int(ended["peak_rss_kib"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    finally:
        os.close(fd)
