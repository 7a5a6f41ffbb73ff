"""The central directory while the zip is sent: it is only written at the end, once every
entry's offset is known, so it is held until then; in memory while small, in a file beyond.

A tree of many long names makes a directory of hundreds of megabytes (each record carries its
name), so past `KEEP` bytes the records go to a file in the folder given (the request's
workspace: opened through the folder's descriptor, never through a link, 0600, and unlinked
at once, so nothing is left behind), and are read back from it at the end.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

from mis_adapters.open_flags import DIR_OPEN, NEW_FILE

KEEP = 16 * 1024 * 1024  # bytes of records held in memory before they go to the file
BLOCK = 1024 * 1024  # records are held, written and read back in blocks of this size
_SPILL_MODE = 0o600


class CentralDirectory:
    """The records back to back, in order: in blocks of up to 1 MiB (a bytes object for each
    record would add ~40 bytes each, and one growing buffer a second copy each time it
    moves), written to a file in `spill_to` (None: the temporary folder) past `KEEP` bytes."""

    def __init__(self, spill_to: Path | None) -> None:
        self.size = 0
        self.count = 0
        self._blocks = [bytearray()]
        self._held = 0
        self._spill_to = spill_to
        self._file: int | None = None
        self._spilled = 0  # bytes in the file

    def add(self, record: bytes) -> None:
        if len(self._blocks[-1]) + len(record) > BLOCK:
            if self._held >= KEEP:
                self._spill()
            self._blocks.append(bytearray())
        self._blocks[-1] += record
        self._held += len(record)
        self.size += len(record)
        self.count += 1

    def blocks(self) -> Iterator[bytes]:
        """The records in order, a block at a time: the file's first, then memory's."""
        offset = 0
        while offset < self._spilled:
            assert self._file is not None
            data = os.pread(self._file, min(BLOCK, self._spilled - offset), offset)
            if not data:
                raise OSError(errno.EIO, "the central directory's file came back short")
            offset += len(data)
            yield data
        for block in self._blocks:
            yield bytes(block)
            block.clear()

    def close(self) -> None:
        if self._file is not None:
            os.close(self._file)
            self._file = None

    def _spill(self) -> None:
        if self._file is None:
            self._file = _open_spill(self._spill_to)
        for block in self._blocks:
            with memoryview(block) as view:
                while view:
                    written = os.pwrite(self._file, view, self._spilled)
                    self._spilled += written
                    view = view[written:]
        self._blocks = [bytearray()]
        self._held = 0


def _open_spill(folder: Path | None) -> int:
    """A new file in `folder`, readable by MIS alone, already unlinked."""
    if folder is None:  # (`mis infer` sending a folder; imported here, as it costs memory)
        import tempfile

        fd, path = tempfile.mkstemp(prefix="mis-central-")
        os.unlink(path)
        return fd
    parent = os.open(folder, DIR_OPEN)
    try:
        name = f".mis-central-{os.urandom(8).hex()}"
        fd = os.open(name, os.O_RDWR | NEW_FILE, _SPILL_MODE, dir_fd=parent)
        os.unlink(name, dir_fd=parent)
    finally:
        os.close(parent)
    return fd
