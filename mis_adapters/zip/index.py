"""An uploaded zip's structure, read by hand with memory that does not grow with what it claims.

`zipfile.ZipFile` turns every central-directory record into a Python object before any check
can run, so an archive claiming millions of entries costs gigabytes. Here the end records are
read first (layout.py), so the entry count and directory size can be refused before a single
entry is parsed; the directory is then read one record at a time, as often as the caller
needs.

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
    FLAG_DATA_DESCRIPTOR,
    FLAG_ENCRYPTED,
    FLAG_UTF8,
    LOCAL,
    LOCAL_SIGNATURE,
    MAX_16,
    MAX_32,
    ZIP64_TAG,
)
from mis_adapters.zip.errors import BadArchive, corrupt
from mis_adapters.zip.layout import Layout

LOCAL_HEADER_BYTES = LOCAL.size


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


def records(archive: BinaryIO, layout: Layout) -> Iterator[Record]:
    """The central directory, one record at a time; exactly `layout.entries` records that fill
    exactly `layout.directory_size` bytes, or BadArchive."""
    archive.seek(layout.directory_offset)
    remaining = layout.directory_size
    for _ in range(layout.entries):
        record, remaining = _record(archive, remaining)
        yield record
    if remaining != 0:
        raise corrupt("its central directory is longer than its entries")


def _record(archive: BinaryIO, remaining: int) -> tuple[Record, int]:
    """The record at the archive's position, and the directory's bytes left after it."""
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
    record = Record(
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
    return record, remaining


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
