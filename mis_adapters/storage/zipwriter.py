"""The output zip, streamed: built lazily, a piece at a time, as the caller pulls it.

Used for the MAP's output folder and by `mis infer` to send a folder.
"""

from __future__ import annotations

import datetime
import os
import stat
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from loguru import logger
from stream_zip import NO_COMPRESSION_32, NO_COMPRESSION_64, ZIP_AUTO, Method, stream_zip

_CHUNK = 1024 * 1024
_READ = 64 * 1024
_ZIP_ENTRY_MODE = stat.S_IFREG | 0o644
_ZIP_DIR_MODE = stat.S_IFDIR | 0o755
COMPRESSION_POLICIES = ("adaptive", "deflate", "stored")
_SAMPLE = 16 * 1024  # bytes of a file's middle that decide whether it compresses
_WORTH_IT = 0.9  # deflate when the sample shrinks below this fraction
_ZIP32_LIMIT = 0xFFFFFFFF


def zip_folder(folder: Path, level: int, compression: str = "adaptive") -> Iterator[bytes]:
    """Zip bytes of `folder` in chunks of about 1 MiB, built lazily as the caller pulls them.

    Only regular files and folders are included: a symbolic link written by the MAP could
    otherwise smuggle a file of the host into the response.

    `compression`: "deflate" every file at `level`; "stored" (no compression); "adaptive"
    deflates only files whose middle compresses, since deflating already-compressed pixels
    costs ~25 ms per MB here and saves nothing.
    """
    members = _members(folder, level, compression)
    compress = lambda: zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)  # noqa: E731
    return _rechunk(stream_zip(members, chunk_size=_READ, get_compressobj=compress))


def _members(folder: Path, level: int, compression: str) -> Iterator[tuple]:  # type: ignore[type-arg]
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        here = Path(dirpath)
        relative = here.relative_to(folder).as_posix()
        if relative != "." and not dirnames and not filenames:
            yield relative + "/", _mtime(os.lstat(here)), _ZIP_DIR_MODE, ZIP_AUTO(0), ()
        for name in sorted(filenames):
            path = here / name
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                logger.warning("left a symbolic link or special file out of the output zip")
                continue
            arcname = path.relative_to(folder).as_posix()
            method = _method(path, info.st_size, level, compression)
            yield arcname, _mtime(info), _ZIP_ENTRY_MODE, method, _read(path)


def _method(path: Path, size: int, level: int, compression: str) -> Method:
    if compression == "deflate" or (compression == "adaptive" and _compresses(path, size)):
        return ZIP_AUTO(size, level=level)
    crc = 0
    for chunk in _read(path):  # stored entries need their CRC up front: one more (cached) read
        crc = zlib.crc32(chunk, crc)
    return (NO_COMPRESSION_32 if size <= _ZIP32_LIMIT else NO_COMPRESSION_64)(size, crc)


def _compresses(path: Path, size: int) -> bool:
    """Whether deflate pays: judged on a sample from the file's middle (past any header)."""
    if size < 4 * _SAMPLE:
        return True  # small files cost little either way
    with open(path, "rb") as source:
        source.seek(size // 2)
        sample = source.read(_SAMPLE)
    return len(zlib.compress(sample, 1)) < _WORTH_IT * len(sample)


def _mtime(info: os.stat_result) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(info.st_mtime)


def _read(path: Path) -> Iterator[bytes]:
    """64 KiB at a time: the compressor then hands out its first bytes after ~1 ms, not after
    a whole megabyte (20 ms at level 1)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as source:
        while chunk := source.read(_READ):
            yield chunk


def _rechunk(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Merge small pieces so each hop between the worker thread and the event loop moves up to
    1 MiB; the first pieces go out small, so the response starts as soon as the MAP is done."""
    buffer = bytearray()
    threshold = 16 * 1024
    for chunk in chunks:
        buffer += chunk
        if len(buffer) >= threshold:
            yield bytes(buffer)
            buffer.clear()
            threshold = min(threshold * 4, _CHUNK)
    if buffer:
        yield bytes(buffer)
