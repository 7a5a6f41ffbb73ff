"""Reading a small file the user names, whatever it turns out to be.

Opened without blocking, since the opening of a FIFO that nothing writes to blocks for ever;
a FIFO (a shell's `<(command)`) must bring something within `FIFO_WAIT_SECONDS`. Never more
than the caller's limit plus one byte is read, so `/dev/zero` or a huge file costs nothing.
"""

from __future__ import annotations

import os
import select
import stat
from pathlib import Path

FIFO_WAIT_SECONDS = 5.0


class NothingCame(Exception):
    """A FIFO that brought nothing in time; the message says which."""


def read_at_most(path: Path, limit: int) -> bytes:
    """Up to `limit` + 1 bytes of `path`; OSError when it cannot be opened or read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with open(fd, "rb") as source:
        fifo = stat.S_ISFIFO(os.fstat(fd).st_mode)
        if fifo and not select.select([fd], [], [], FIFO_WAIT_SECONDS)[0]:
            raise NothingCame(
                f"nothing came through the FIFO {path} within {FIFO_WAIT_SECONDS:g} s; is "
                "anything writing to it?"
            )
        os.set_blocking(fd, True)
        return source.read(limit + 1)
