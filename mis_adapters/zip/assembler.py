"""The steps' results, in order, turned into the zip's bytes: the assembler alone knows the
offsets, so it writes the central directory (directory.py), checks that a large file's
pieces joined up, and closes a large file once it is sent."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from pathlib import Path
from typing import Any

from mis_adapters.zip.directory import CentralDirectory
from mis_adapters.zip.errors import OutputProblem
from mis_adapters.zip.records import Entry, crc32_combine, end_of_archive
from mis_adapters.zip.steps import Batch, Close, Files, Open, Packed, Piece, Sent, Step


class Assembler:
    def __init__(self, files: Files, spill_to: Path | None = None) -> None:
        self._files = files
        self._offset = 0
        self.directory = CentralDirectory(spill_to)
        self._zip64 = False
        self._open: tuple[Entry, int] | None = None  # the large entry being sent, its offset
        self._crc = self._length = self._compressed = 0  # of the pieces since the last open
        self._tail = 0  # CRC of the last 32 KiB that the last deflated piece sent

    def parts(self, steps: Iterable[tuple[Step, Any]]) -> Generator[bytes, None, None]:
        directory = self.directory
        try:
            for step, result in steps:
                part = self._take(step, result)
                self._offset += len(part)
                yield part
            yield from directory.blocks()
            yield end_of_archive(directory.count, self._offset, directory.size, self._zip64)
        finally:
            directory.close()

    def _take(self, step: Step, result: Any) -> bytes:
        if isinstance(step, Batch):
            packed: Packed = result
            for start, entry in packed.entries:
                self._add(entry, self._offset + start)
            return packed.data
        if isinstance(step, Piece):
            return self._piece(step, result)
        if isinstance(step, Open):
            entry = step.entry
            if not entry.streamed:  # its checksum pass came just before
                entry.crc, entry.size, entry.compressed = self._crc, self._length, self._length
            self._open = (entry, self._offset)
            self._crc = self._length = self._compressed = 0
            return entry.local_header()
        return self._close(step)

    def _piece(self, step: Piece, sent: Sent) -> bytes:
        if step.send and step.level is not None:
            if step.offset and sent.history != self._tail:
                raise OutputProblem("a file in it changed while it was being sent")
            self._tail = sent.tail
        self._crc = crc32_combine(self._crc, sent.crc, step.length)
        self._length += step.length
        self._compressed += len(sent.data)
        return sent.data

    def _close(self, step: Close) -> bytes:
        assert self._open is not None
        entry, offset = self._open
        self._open = None
        self._files.close(step.fd)
        if entry.streamed:
            entry.crc, entry.size, entry.compressed = self._crc, self._length, self._compressed
            end = entry.data_descriptor()
        elif (self._crc, self._length) != (entry.crc, entry.size):
            raise OutputProblem("a file in it changed while it was being sent")
        else:
            end = b""
        self._add(entry, offset)
        self._crc = self._length = self._compressed = 0
        return end

    def _add(self, entry: Entry, offset: int) -> None:
        self._zip64 |= entry.zip64
        self.directory.add(entry.central_header(offset))
