"""The output zip, streamed: built lazily, a piece at a time, as the caller pulls it.

Used for the MAP's output folder and by `mis infer` to send a folder. The folder is walked
with descriptors (`walk.py`): a link, at any level and at any moment, contributes nothing.
Before the first byte the whole tree is scanned once, so what would stop the zip halfway (a
file that cannot be read, a name that is not UTF-8) is an `OutputProblem` raised while the
caller can still answer with an error instead of a cut body.

The zip is whole for any size and count: an entry uses the zip64 form as soon as the archive
could pass 4 GiB by its end (counted from an upper bound of every entry before it), or it is
the 65,536th entry or later; below that, the plain form, which every unzip reads.
"""

from __future__ import annotations

import datetime
import os
import stat
import zlib
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path

from stream_zip import NO_COMPRESSION_32, NO_COMPRESSION_64, ZIP_32, ZIP_64, Method, stream_zip

from mis_adapters.storage.walk import Member, OutputProblem, Walker, open_top, scan

_CHUNK = 1024 * 1024
_READ = 64 * 1024
_ZIP_ENTRY_MODE = stat.S_IFREG | 0o644
_ZIP_DIR_MODE = stat.S_IFDIR | 0o755
COMPRESSION_POLICIES = ("adaptive", "deflate", "stored")
_SAMPLE = 16 * 1024  # bytes of a file's middle that decide whether it compresses
_WORTH_IT = 0.9  # deflate when the sample shrinks below this fraction
_ZIP32_MAX_OFFSET = 0xFFFFFFFF
_ZIP32_MAX_ENTRIES = 0xFFFF
# Per entry, beyond its name and data: local header (30), extra fields (zip64 20, time 9),
# data descriptor (24 at most), with room to spare.
_ENTRY_OVERHEAD = 128


def zip_folder(
    folder: Path, level: int, compression: str = "adaptive"
) -> Generator[bytes, None, None]:
    """Zip bytes of `folder` in chunks of about 1 MiB, built lazily as the caller pulls them.

    `compression`: "deflate" every file at `level`; "stored" (no compression); "adaptive"
    deflates only files whose middle compresses, since deflating already-compressed pixels
    costs ~25 ms per MB here and saves nothing. Raises OutputProblem, before the first chunk
    when it can be known then.
    """
    top = open_top(folder)
    try:
        scan(top)
        compress = lambda: zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)  # noqa: E731
        members = _members(top, level, compression)
        yield from _rechunk(stream_zip(members, chunk_size=_READ, get_compressobj=compress))
    finally:
        os.close(top)


def _members(top: int, level: int, compression: str) -> Iterator[tuple]:  # type: ignore[type-arg]
    """stream_zip's members, each file's descriptor closed once its data has been pulled."""
    written = 0  # an upper bound of the archive's size so far
    count = 0
    walk = iter(Walker(top))
    try:
        for member in walk:
            count += 1
            name_bytes = len(member.name.encode())
            if member.fd is None:
                needs64 = _needs_zip64(count, written + _ENTRY_OVERHEAD + name_bytes)
                written += _ENTRY_OVERHEAD + name_bytes
                empty = (NO_COMPRESSION_64 if needs64 else NO_COMPRESSION_32)(0, 0)
                yield member.name, _mtime(member), _ZIP_DIR_MODE, empty, ()
                continue
            try:
                size = member.info.st_size
                deflate = compression == "deflate" or (
                    compression == "adaptive" and _compresses(member.fd, size)
                )
                most = _deflate_bound(size) if deflate else size
                written += _ENTRY_OVERHEAD + name_bytes + most
                needs64 = _needs_zip64(count, written)
                if deflate:
                    method: Method = ZIP_64 if needs64 else ZIP_32
                else:
                    crc = 0
                    for chunk in _read(member.fd, size):  # stored entries need their CRC first
                        crc = zlib.crc32(chunk, crc)
                    method = (NO_COMPRESSION_64 if needs64 else NO_COMPRESSION_32)(size, crc)
                yield member.name, _mtime(member), _ZIP_ENTRY_MODE, method, _read(member.fd, size)
            finally:
                os.close(member.fd)
    finally:
        walk.close()  # type: ignore[attr-defined]


def _needs_zip64(count: int, end_bound: int) -> bool:
    return count > _ZIP32_MAX_ENTRIES or end_bound > _ZIP32_MAX_OFFSET


def _deflate_bound(size: int) -> int:
    """Deflate's worst case for `size` bytes (zlib's deflateBound, generously rounded up)."""
    return size + (size >> 10) + 1024


def _compresses(fd: int, size: int) -> bool:
    """Whether deflate pays: judged on a sample from the file's middle (past any header)."""
    if size < 4 * _SAMPLE:
        return True  # small files cost little either way
    sample = os.pread(fd, _SAMPLE, size // 2)
    return len(zlib.compress(sample, 1)) < _WORTH_IT * max(len(sample), 1)


_EARLIEST = datetime.datetime(1980, 1, 1)  # the zip format's first date
_LATEST = datetime.datetime.fromtimestamp(2**31 - 1)  # its 32-bit extended timestamp's last


def _mtime(member: Member) -> datetime.datetime:
    """The modification time, within what the zip fields can hold (a MAP may set any)."""
    seconds = min(max(member.info.st_mtime, _EARLIEST.timestamp()), _LATEST.timestamp())
    return datetime.datetime.fromtimestamp(seconds)


def _read(fd: int, size: int) -> Iterator[bytes]:
    """Exactly the `size` bytes the file had when it was opened, 64 KiB at a time (the
    compressor then hands out its first bytes after ~1 ms, not after a whole megabyte)."""
    position = 0
    while position < size:
        chunk = os.pread(fd, min(_READ, size - position), position)
        if not chunk:
            raise OutputProblem("a file in it shrank while it was being sent")
        position += len(chunk)
        yield chunk


def _rechunk(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Merge small pieces so each hop between the worker thread and the event loop moves up to
    1 MiB; the first pieces go out small, so the response starts as soon as the MAP is done:
    the very first (the first entry's header) at once, since a deflated entry's data can take
    tens of milliseconds to reach 16 KiB (zlib holds back what it has compressed)."""
    buffer = bytearray()
    threshold = 1
    for chunk in chunks:
        buffer += chunk
        if len(buffer) >= threshold:
            yield bytes(buffer)
            buffer.clear()
            threshold = min(max(threshold * 4, 16 * 1024), _CHUNK)
    if buffer:
        yield bytes(buffer)
