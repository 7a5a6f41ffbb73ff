"""Where an uploaded zip's central directory is, from its end records alone (the end of
central directory record, and the zip64 locator and record): the entry count and directory
size can be refused before a single entry is parsed. Reads at most the last 64 KiB and the
zip64 record; checks what they say against the file's own size."""

from __future__ import annotations

import os
from typing import BinaryIO

import attrs

from mis_adapters.zip.constants import (
    END,
    END_64,
    END_64_LOCATOR,
    END_64_LOCATOR_SIGNATURE,
    END_64_SIGNATURE,
    END_SIGNATURE,
    MAX_16,
    MAX_32,
)
from mis_adapters.zip.errors import BadArchive, corrupt

_MAX_COMMENT = 0xFFFF


@attrs.frozen
class Layout:
    """Where the central directory is, and what the end records say about it."""

    entries: int
    directory_offset: int
    directory_size: int


def read_layout(archive: BinaryIO) -> Layout:
    """The end records' account of the central directory (zip64 included), checked against
    the file's own size. Reads at most the last 64 KiB and the zip64 record."""
    size = os.fstat(archive.fileno()).st_size
    tail_start = max(0, size - END.size - _MAX_COMMENT)
    tail = _pread(archive, size - tail_start, tail_start)
    at = _find_end_record(tail)
    if at < 0:
        raise BadArchive(
            "The upload is not a readable zip archive (no end of central directory record). "
            "Send a .zip file made by a standard zip tool."
        )
    end_offset = tail_start + at
    _, disk, directory_disk, on_disk, entries, directory_size, directory_offset, _ = (
        END.unpack_from(tail, at)
    )
    directory_end = end_offset
    locator_at = at - END_64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at : locator_at + 4] == END_64_LOCATOR_SIGNATURE:
        record_offset = _read_zip64_locator(tail, locator_at)
        if record_offset + END_64.size > end_offset - END_64_LOCATOR.size:
            raise corrupt("its zip64 end record lies outside the archive")
        record = _pread(archive, END_64.size, record_offset)
        if len(record) != END_64.size or record[:4] != END_64_SIGNATURE:
            raise corrupt("its zip64 end record is missing")
        plain = (entries, directory_size, directory_offset)
        (_, _, _, _, disk, directory_disk, on_disk, entries, directory_size, directory_offset) = (
            END_64.unpack(record)
        )
        _same_unless_saturated(plain, (entries, directory_size, directory_offset))
        directory_end = record_offset
    elif MAX_16 in (entries, on_disk) or MAX_32 in (directory_size, directory_offset):
        raise corrupt("its end record points to a zip64 record that is not there")
    if disk != 0 or directory_disk != 0 or on_disk != entries:
        raise BadArchive(
            "The zip archive is split over several parts (a multi-volume archive); send it as "
            "one .zip file."
        )
    if directory_offset + directory_size != directory_end:
        raise BadArchive(
            "The zip archive's central directory is not where its end record says (data "
            "before the archive, as in a self-extracting file, or a damaged archive). "
            "Re-create it with a standard zip tool."
        )
    return Layout(entries, directory_offset, directory_size)


def _same_unless_saturated(plain: tuple[int, int, int], wide: tuple[int, int, int]) -> None:
    """The 32-bit end record must say what the zip64 one says wherever it holds a value: two
    readers must never see two different archives in one file."""
    for narrow, value, full in zip(plain, wide, (MAX_16, MAX_32, MAX_32), strict=True):
        if narrow not in (full, value):
            raise BadArchive(
                "The zip archive is inconsistent: its two end records disagree. Re-create it "
                "with a standard zip tool."
            )


def _find_end_record(tail: bytes) -> int:
    """The end record whose comment ends exactly at the end of the file, or -1."""
    end = len(tail)
    while (at := tail.rfind(END_SIGNATURE, 0, end)) >= 0:
        if at + END.size <= len(tail):
            comment = END.unpack_from(tail, at)[7]
            if at + END.size + comment == len(tail):
                return at
        end = at
    return -1


def _read_zip64_locator(tail: bytes, at: int) -> int:
    _, record_disk, record_offset, disks = END_64_LOCATOR.unpack_from(tail, at)
    if record_disk != 0 or disks > 1:
        raise BadArchive(
            "The zip archive is split over several parts (a multi-volume archive); send it as "
            "one .zip file."
        )
    return int(record_offset)


def _pread(archive: BinaryIO, length: int, offset: int) -> bytes:
    return os.pread(archive.fileno(), length, offset)
