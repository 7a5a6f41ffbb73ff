"""An uploaded zip's structure, read by hand with memory that does not grow with what it claims.

`zipfile.ZipFile` turns every central-directory record into a Python object before any check
can run, so an archive claiming millions of entries costs gigabytes. Here the end records
(the end of central directory record, and the zip64 locator and record) are read first, so the
entry count and directory size can be refused before a single entry is parsed; the directory
is then read one record at a time, as often as the caller needs.

Everything a record says is a claim: sizes and offsets are checked by the caller against the
archive's layout, and every local header against its record (`local_data_start`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

import attrs

from mis_adapters.zip.constants import (
    CENTRAL,
    CENTRAL_SIGNATURE,
    END,
    END_64,
    END_64_LOCATOR,
    END_64_LOCATOR_SIGNATURE,
    END_64_SIGNATURE,
    END_SIGNATURE,
    FLAG_DATA_DESCRIPTOR,
    FLAG_ENCRYPTED,
    FLAG_UTF8,
    LOCAL,
    LOCAL_SIGNATURE,
    MAX_16,
    MAX_32,
    ZIP64_TAG,
)
from mis_adapters.zip.errors import BadArchive

_MAX_COMMENT = 0xFFFF
LOCAL_HEADER_BYTES = LOCAL.size


@attrs.frozen
class Layout:
    """Where the central directory is, and what the end records say about it."""

    entries: int
    directory_offset: int
    directory_size: int


@attrs.frozen
class Record:
    """One central-directory record, as claimed."""

    raw_name: bytes
    name: str
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    creator_system: int  # 3: Unix, so external_attr's high half is a st_mode
    external_attr: int


def corrupt(what: str) -> BadArchive:
    return BadArchive(f"The zip archive is corrupt: {what}. Re-create it and retry.")


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


def records(archive: BinaryIO, layout: Layout) -> Iterator[Record]:
    """The central directory, one record at a time; exactly `layout.entries` records that fill
    exactly `layout.directory_size` bytes, or BadArchive."""
    archive.seek(layout.directory_offset)
    remaining = layout.directory_size
    for _ in range(layout.entries):
        if remaining < CENTRAL.size:
            raise corrupt("its central directory is shorter than its entry count says")
        fixed = archive.read(CENTRAL.size)
        if len(fixed) != CENTRAL.size or fixed[:4] != CENTRAL_SIGNATURE:
            raise corrupt("a central directory record is damaged")
        (
            _,
            made_by,
            _,
            flags,
            method,
            _,
            _,
            crc,
            compressed_size,
            size,
            name_length,
            extra_length,
            comment_length,
            disk_start,
            _,
            external_attr,
            header_offset,
        ) = CENTRAL.unpack(fixed)
        variable = name_length + extra_length + comment_length
        remaining -= CENTRAL.size + variable
        if remaining < 0:
            raise corrupt("a central directory record runs past the directory's end")
        raw_name = archive.read(name_length)
        extra = archive.read(extra_length)
        archive.seek(comment_length, os.SEEK_CUR)
        if len(raw_name) != name_length or len(extra) != extra_length:
            raise corrupt("a central directory record is cut short")
        size, compressed_size, header_offset, disk_start = _zip64_values(
            extra, size, compressed_size, header_offset, disk_start
        )
        if disk_start != 0:
            raise BadArchive(
                "The zip archive is split over several parts (a multi-volume archive); send "
                "it as one .zip file."
            )
        yield Record(
            raw_name=raw_name,
            name=_decode_name(raw_name, flags),
            flags=flags,
            method=method,
            crc=crc,
            compressed_size=compressed_size,
            size=size,
            header_offset=header_offset,
            creator_system=made_by >> 8,
            external_attr=external_attr,
        )
    if remaining != 0:
        raise corrupt("its central directory is longer than its entries")


def _zip64_values(
    extra: bytes, size: int, compressed_size: int, header_offset: int, disk_start: int
) -> tuple[int, int, int, int]:
    """The real values of the 32-bit fields that are saturated, from the zip64 extra field,
    in the order the format gives them; a field that is not saturated is never overridden."""
    wanted = [size == MAX_32, compressed_size == MAX_32, header_offset == MAX_32]
    if not any(wanted) and disk_start != MAX_16:
        return size, compressed_size, header_offset, disk_start
    data = _extra_field(extra, ZIP64_TAG)
    if data is None:
        raise corrupt("an entry's sizes point to a zip64 extra field that is not there")
    values = [size, compressed_size, header_offset]
    at = 0
    for index, needed in enumerate(wanted):
        if needed:
            if at + 8 > len(data):
                raise corrupt("an entry's zip64 extra field is shorter than its sizes need")
            values[index] = int.from_bytes(data[at : at + 8], "little")
            at += 8
    if disk_start == MAX_16:
        if at + 4 > len(data):
            raise corrupt("an entry's zip64 extra field is shorter than its sizes need")
        disk_start = int.from_bytes(data[at : at + 4], "little")
    return values[0], values[1], values[2], disk_start


def _extra_field(extra: bytes, wanted: int) -> bytes | None:
    at = 0
    while at + 4 <= len(extra):
        kind, length = struct.unpack_from("<HH", extra, at)
        if kind == wanted:
            return extra[at + 4 : at + 4 + length]
        at += 4 + length
    return None


def _decode_name(raw: bytes, flags: int) -> str:
    """The entry's name as its creator meant it.

    With the UTF-8 flag the name must be UTF-8. Without it the format says cp437, but
    Info-ZIP's `zip` on Linux writes UTF-8 without setting the flag: bytes that are valid
    UTF-8 are taken as UTF-8, as 7-Zip does.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        if flags & FLAG_UTF8:
            raise BadArchive(
                "The zip archive has an entry name that is not valid UTF-8 although the "
                "archive says it is. Re-create it with a standard zip tool."
            ) from None
        return raw.decode("cp437")


def local_data_start(archive: BinaryIO, record: Record) -> int:
    """Where the entry's data starts, after checking that its local header agrees with its
    central-directory record (name, method, encryption): two readers must never see two
    different archives in one file."""
    header = _pread(archive, LOCAL.size + len(record.raw_name), record.header_offset)
    if len(header) < LOCAL.size or header[:4] != LOCAL_SIGNATURE:
        raise corrupt("an entry's local header is missing")
    _, _, flags, method, _, _, crc, compressed, size, name_length, extra_length = LOCAL.unpack_from(
        header
    )
    if header[LOCAL.size :] != record.raw_name or name_length != len(record.raw_name):
        raise BadArchive(
            "The zip archive is inconsistent: an entry's local header names another file "
            "than its central directory record. Re-create it with a standard zip tool."
        )
    if method != record.method or (flags ^ record.flags) & FLAG_ENCRYPTED:
        raise BadArchive(
            "The zip archive is inconsistent: an entry's local header and its central "
            "directory record disagree on how it is stored. Re-create it with a standard zip "
            "tool."
        )
    sized_here = not flags & FLAG_DATA_DESCRIPTOR and MAX_32 not in (compressed, size)
    if sized_here and (crc, compressed, size) != (record.crc, record.compressed_size, record.size):
        raise BadArchive(
            "The zip archive is inconsistent: an entry's local header and its central "
            "directory record disagree on its size or checksum. Re-create it with a "
            "standard zip tool."
        )
    return record.header_offset + LOCAL.size + int(name_length) + int(extra_length)


def _pread(archive: BinaryIO, length: int, offset: int) -> bytes:
    return os.pread(archive.fileno(), length, offset)
