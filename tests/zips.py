"""Building real zip archives for tests, including the hostile ones."""

from __future__ import annotations

import stat
import struct
import zipfile
import zlib
from pathlib import Path

import attrs

from mis_adapters.storage.archive import ExtractLimits

# Limits no test archive comes near, unless it is built to
ROOMY_LIMITS = ExtractLimits(max_extracted_bytes=10**9, max_entries=1000, max_compression_ratio=200)


def make_zip(path: Path, files: dict[str, bytes], **kwargs: object) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, **kwargs) as zf:  # type: ignore[call-overload]
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_symlink_zip(path: Path, name: str = "link", target: str = "/etc/passwd") -> Path:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr(info, target)
    return path


def make_special_file_zip(path: Path) -> Path:
    info = zipfile.ZipInfo("fifo")
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info, b"")
    return path


def patch_bytes(path: Path, old: bytes, new: bytes) -> Path:
    """Replace every occurrence of `old` (same length) in the archive's bytes."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new))
    return path


def make_lying_size_zip(path: Path, real_size: int, declared: int) -> Path:
    """One entry of `real_size` zero bytes whose headers claim it is `declared` bytes long."""
    make_zip(path, {"scan.raw": bytes(real_size)})
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("scan.raw")
    data = bytearray(path.read_bytes())
    size_field = real_size.to_bytes(4, "little")
    for offset in _find_all(data, size_field):
        data[offset : offset + 4] = declared.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert info.file_size == real_size
    return path


def make_overlapping_zip(path: Path) -> Path:
    """Two central-directory entries that point at the same local header and data."""
    make_zip(path, {"a.bin": bytes(1000), "b.bin": bytes(1000)})
    with zipfile.ZipFile(path) as zf:
        second = zf.getinfo("b.bin")
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)  # b.bin's record
    data[central + 42 : central + 46] = (0).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert second.header_offset > 0
    return path


def _find_all(data: bytearray, needle: bytes) -> list[int]:
    found, start = [], 0
    while (at := data.find(needle, start)) >= 0:
        found.append(at)
        start = at + 1
    return found


@attrs.define
class RawEntry:
    """One entry of a hand-built archive: every field may lie."""

    name: bytes
    data: bytes = b""  # as stored (already compressed for method 8)
    method: int = 0
    size: int | None = None  # declared uncompressed size; default len(data) for stored
    crc: int | None = None
    flags: int = 0x800
    creator: int = 3  # Unix
    mode: int = stat.S_IFREG | 0o644
    local_name: bytes | None = None  # what the local header says, when it lies
    local_method: int | None = None
    local_flags: int | None = None
    offset: int | None = None  # what the directory says the local header's offset is
    zip64: bool = False  # sizes and offset in a zip64 extra field


def deflated(data: bytes) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def raw_zip(
    entries: list[RawEntry],
    *,
    prefix: bytes = b"",
    comment: bytes = b"",
    zip64_end: bool = False,
    claimed_entries: int | None = None,
) -> bytes:
    """A zip built field by field, so tests can make the lies zipfile never writes."""
    body = bytearray(prefix)
    directory = bytearray()
    for entry in entries:
        size = len(entry.data) if entry.size is None else entry.size
        crc = zlib.crc32(entry.data) if entry.crc is None else entry.crc
        offset = len(body) - len(prefix) if entry.offset is None else entry.offset
        local_name = entry.name if entry.local_name is None else entry.local_name
        body += struct.pack(
            "<4sHHHHHIIIHH",
            b"PK\x03\x04",
            20,
            entry.flags if entry.local_flags is None else entry.local_flags,
            entry.method if entry.local_method is None else entry.local_method,
            0,
            0x21,
            crc,
            len(entry.data),
            size,
            len(local_name),
            0,
        )
        body += local_name + entry.data
        fields = (len(entry.data), size, offset)
        extra = b""
        if entry.zip64:
            extra = struct.pack("<HHQQQ", 1, 24, size, len(entry.data), offset)
            fields = (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
        directory += struct.pack(
            "<4sHHHHHHIIIHHHHHII",
            b"PK\x01\x02",
            (entry.creator << 8) | 20,
            20,
            entry.flags,
            entry.method,
            0,
            0x21,
            crc,
            fields[0],
            fields[1],
            len(entry.name),
            len(extra),
            0,
            0,
            0,
            entry.mode << 16,
            fields[2],
        )
        directory += entry.name + extra
    start = len(body) - len(prefix)
    count = len(entries) if claimed_entries is None else claimed_entries
    end = bytearray(body + directory)
    if zip64_end:
        record_at = len(end) - len(prefix)
        end += struct.pack(
            "<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, len(directory), start
        )
        end += struct.pack("<4sIQI", b"PK\x06\x07", 0, record_at, 1)
        end += struct.pack(
            "<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, len(comment)
        )
    else:
        end += struct.pack(
            "<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(directory), start, len(comment)
        )
    return bytes(end + comment)


def many_entries_zip(path: Path, entries: int) -> Path:
    """A real archive of `entries` empty files (zip64 end records), written in a second or two
    where zipfile would take minutes."""
    with open(path, "wb") as sink:
        offsets = []
        for n in range(entries):
            offsets.append(sink.tell())
            name = b"f%07d" % n
            sink.write(
                struct.pack(
                    "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0
                )
            )
            sink.write(name)
        start = sink.tell()
        for n, offset in enumerate(offsets):
            name = b"f%07d" % n
            sink.write(
                struct.pack(
                    "<4sHHHHHHIIIHHHHHII",
                    b"PK\x01\x02",
                    0x314,
                    20,
                    0,
                    0,
                    0,
                    0x21,
                    0,
                    0,
                    0,
                    len(name),
                    0,
                    0,
                    0,
                    0,
                    (stat.S_IFREG | 0o644) << 16,
                    offset,
                )
            )
            sink.write(name)
        size = sink.tell() - start
        record_at = sink.tell()
        sink.write(
            struct.pack(
                "<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, size, start
            )
        )
        sink.write(struct.pack("<4sIQI", b"PK\x06\x07", 0, record_at, 1))
        sink.write(
            struct.pack(
                "<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0
            )
        )
    return path
