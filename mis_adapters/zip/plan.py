"""The walk turned into steps (steps.py), in archive order: small files read and batched, a
large one (or the first, when deflated) in pieces of 1 MiB; every member held to the budget
again as it is met (budget.py), since a MAP still running after the scan could change the tree.

Whether an entry takes the zip64 form is decided here, from an upper bound of the archive's
size up to its end: zip64 as soon as the archive could pass 4 GiB, or from the 65,536th entry.
"""

from __future__ import annotations

import datetime
import os
import stat
from collections.abc import Iterator

from mis_adapters.zip import deflate
from mis_adapters.zip.budget import Budget, OutputLimits
from mis_adapters.zip.constants import DEFLATED, MAX_16, MAX_32, STORED
from mis_adapters.zip.records import Entry
from mis_adapters.zip.steps import PIECE, Batch, Close, Files, Open, Piece, Step, pread_exactly
from mis_adapters.zip.walk import Member, Walker

_BATCH_BYTES = 256 * 1024  # small files go to a worker together, this many bytes of them...
_BATCH_FILES = 64  # ...or this many, whichever comes first
_ZIP_ENTRY_MODE = stat.S_IFREG | 0o644
_ZIP_DIR_MODE = stat.S_IFDIR | 0o755
# Whether a file compresses is judged on this many bytes of its middle (4 KiB tell pixel
# noise from what deflate can shrink as well as 16 KiB, at a third of the time, paid by the
# first file before the response starts); smaller files always deflate.
_SAMPLE = 4 * 1024
_SAMPLED_FROM = 64 * 1024
_WORTH_IT = 0.9  # deflate when the sample shrinks below this fraction
# Per entry, beyond its name and data: local header (30), extra fields (zip64 20, time 9),
# data descriptor (24 at most), with room to spare.
_ENTRY_OVERHEAD = 128


class _Bound:
    """The archive so far: entries, and an upper bound of its size."""

    def __init__(self) -> None:
        self.count = 0
        self.written = 0

    def add(self, name: bytes, data_bound: int) -> bool:
        """Count an entry; whether it takes the zip64 form."""
        self.count += 1
        self.written += _ENTRY_OVERHEAD + len(name) + data_bound
        return needs_zip64(self.count, self.written)


def plan(
    top: int, level: int, compression: str, files: Files, limits: OutputLimits
) -> Iterator[Step]:
    """The steps that send the tree under `top`, in archive order. Small files are read and
    closed here; a large file's descriptor is handed to `files` until its `Close`."""
    budget = Budget(limits)
    bound = _Bound()
    batch: list[tuple[Entry, bytes]] = []
    batched = 0  # bytes in the batch, names included
    walk = iter(Walker(top))
    try:
        for member in walk:
            try:
                name = budget.admit(member)
            except BaseException:
                if member.fd is not None:
                    os.close(member.fd)
                raise
            if member.fd is None:
                zip64 = bound.add(name, 0)
                batch.append((Entry.at(name, _ZIP_DIR_MODE, _mtime(member), STORED, zip64), b""))
                batched += len(name)
            else:
                entry, data = _file(member, member.fd, name, bound, compression)
                if data is None:  # large, or the first and deflated: its header at once
                    files.hand_over(member.fd)
                    if batch:
                        yield Batch(batch, level)
                        batch, batched = [], 0
                    method = level if entry.method == DEFLATED else None
                    yield from _large(entry, member.fd, member.info.st_size, method)
                    continue
                batch.append((entry, data))
                batched += len(data) + len(name)
            if bound.count == 1 or batched >= _BATCH_BYTES or len(batch) >= _BATCH_FILES:
                yield Batch(batch, level)
                batch, batched = [], 0
        if batch:
            yield Batch(batch, level)
    finally:
        walk.close()  # type: ignore[attr-defined]


def _file(
    member: Member, fd: int, name: bytes, bound: _Bound, compression: str
) -> tuple[Entry, bytes | None]:
    """The member's entry; its data if it goes in a batch (`fd` then closed, else left
    open)."""
    size = member.info.st_size
    try:
        deflated = compression == "deflate" or (compression == "adaptive" and _compresses(fd, size))
        zip64 = bound.add(name, deflate_bound(size) if deflated else size)
        method = DEFLATED if deflated else STORED
        entry = Entry.at(name, _ZIP_ENTRY_MODE, _mtime(member), method, zip64)
        if size > PIECE or (deflated and bound.count == 1):
            return entry, None
        data = pread_exactly(fd, 0, size)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return entry, data


def _large(entry: Entry, fd: int, size: int, level: int | None) -> Iterator[Step]:
    """A large file's steps, deflated at `level` or stored (None): pieces of 1 MiB (one,
    empty, for an empty file)."""
    if level is not None:
        entry.streamed = True
    else:  # a stored entry's header carries its CRC: checksum it first
        for offset, length, last in _spans(size):
            yield Piece(fd, offset, length, None, last, send=False)
    yield Open(entry)
    for offset, length, last in _spans(size):
        yield Piece(fd, offset, length, level, last, send=True)
    yield Close(fd)


def _spans(size: int) -> Iterator[tuple[int, int, bool]]:
    """(offset, length, whether last) of each piece of a file of `size` bytes."""
    if size == 0:
        yield 0, 0, True
    for offset in range(0, size, PIECE):
        length = min(PIECE, size - offset)
        yield offset, length, offset + length == size


ZIP32_MAX_ENTRIES = MAX_16


def needs_zip64(count: int, end_bound: int) -> bool:
    return count > ZIP32_MAX_ENTRIES or end_bound > MAX_32


def deflate_bound(size: int) -> int:
    """Deflate's worst case for `size` bytes (zlib's deflateBound, generously rounded up;
    also for pieces of 1 MiB, which add a few bytes each: a sync flush, a block header)."""
    return size + (size >> 10) + 1024


def _compresses(fd: int, size: int) -> bool:
    """Whether deflate pays: judged on a sample from the file's middle (past any header)."""
    if size < _SAMPLED_FROM:
        return True  # small files cost little either way
    sample = os.pread(fd, _SAMPLE, size // 2)
    return len(deflate.compress(sample, 1)) < _WORTH_IT * max(len(sample), 1)


_EARLIEST = datetime.datetime(1980, 1, 1).timestamp()  # the zip format's first date
_LATEST = float(2**31 - 1)  # its 32-bit extended timestamp's last


def _mtime(member: Member) -> float:
    """The modification time, within what the zip fields can hold (a MAP may set any)."""
    return min(max(member.info.st_mtime, _EARLIEST), _LATEST)
