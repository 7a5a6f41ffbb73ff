"""The steps the plan turns the output into, in archive order, and each step's work.

A step counts for its `cost` in the pipeline's window from when the plan makes it until its
bytes are sent: its data, and its names (a name goes out twice, in its local header and its
central record, and a tree of long names is all names).
"""

from __future__ import annotations

import os
import threading
import zlib

import attrs

from mis_adapters.zip import deflate
from mis_adapters.zip.constants import DEFLATED
from mis_adapters.zip.errors import OutputProblem
from mis_adapters.zip.records import Entry

PIECE = 1024 * 1024  # a larger file is read, deflated and sent this much at a time
HISTORY = 32 * 1024  # deflate's window: the bytes before a piece that prime its compressor
ENTRY_COST = 512  # what an entry counts for in the window besides its data and names
_READ = 1024 * 1024  # the most read at once from a file


def entry_cost(entry: Entry) -> int:
    return ENTRY_COST + 2 * len(entry.name)


@attrs.define
class Packed:
    """Ready-made entries: their local headers and data, and where each one starts in it."""

    data: bytes
    entries: list[tuple[int, Entry]]


@attrs.frozen
class Batch:
    """Small entries, their data read already (a folder's is empty)."""

    entries: list[tuple[Entry, bytes]]
    level: int

    @property
    def cost(self) -> int:
        return sum(len(data) + entry_cost(entry) for entry, data in self.entries)

    def run(self) -> Packed:
        parts: list[bytes] = []
        placed: list[tuple[int, Entry]] = []
        position = 0
        for entry, data in self.entries:
            entry.crc = zlib.crc32(data)
            entry.size = len(data)
            if entry.method == DEFLATED:
                data = deflate.compress(data, self.level)
            entry.compressed = len(data)
            header = entry.local_header()
            placed.append((position, entry))
            parts += (header, data)
            position += len(header) + len(data)
        return Packed(b"".join(parts), placed)


@attrs.frozen
class Open:
    """A large (or the first) entry begins: its local header goes out before its data."""

    entry: Entry

    @property
    def cost(self) -> int:
        return entry_cost(self.entry)


@attrs.frozen
class Piece:
    """`length` bytes of a large file from `offset`: deflated at `level`, or as they are
    (None); only checksummed, when not `send` (a stored entry's CRC, needed before its
    header)."""

    fd: int
    offset: int
    length: int
    level: int | None
    last: bool
    send: bool

    @property
    def cost(self) -> int:
        return self.length

    def run(self) -> Sent:
        data = pread_exactly(self.fd, self.offset, self.length)
        crc = zlib.crc32(data)
        if not self.send:
            return Sent(b"", crc)
        if self.level is None:
            return Sent(data, crc)
        history = pread_exactly(self.fd, max(0, self.offset - HISTORY), min(self.offset, HISTORY))
        deflater = deflate.compressor(self.level, history)
        flush = deflate.FINISH if self.last else deflate.SYNC_FLUSH
        return Sent(
            deflater.compress(data) + deflater.flush(flush),
            crc,
            zlib.crc32(history),
            zlib.crc32(data[-HISTORY:]),
        )


@attrs.frozen
class Sent:
    """What a piece sends and the CRC of its bytes. A deflated piece's back-references may
    reach into the 32 KiB before it, which it read again itself: the CRCs of those bytes and
    of its own last 32 KiB let the sender check that they are what the piece before sent
    (a file rewritten between two pieces' reads would otherwise unpack to other bytes than
    its CRC says, in an archive that looks whole)."""

    data: bytes
    crc: int
    history: int = 0  # CRC of the bytes that primed its compressor
    tail: int = 0  # CRC of its own last 32 KiB (the next piece's history)


@attrs.frozen
class Close:
    """A large entry's data is all out: its descriptor (or its check), and its file closed."""

    fd: int
    cost: int = 0


Step = Batch | Open | Piece | Close


class Files:
    """The large files' descriptors, from the walk handing them over until each is sent;
    whatever is left when the zip stops is closed once no thread reads it any more."""

    def __init__(self) -> None:
        self._open: set[int] = set()
        self._lock = threading.Lock()

    def hand_over(self, fd: int) -> None:
        with self._lock:
            self._open.add(fd)

    def close(self, fd: int) -> None:
        with self._lock:
            self._open.discard(fd)
        os.close(fd)

    def close_all(self) -> None:
        with self._lock:
            left, self._open = self._open, set()
        for fd in left:
            os.close(fd)


def pread_exactly(fd: int, offset: int, length: int) -> bytes:
    """Exactly the `length` bytes from `offset` the file had when it was opened."""
    if length == 0:
        return b""
    data = os.pread(fd, min(length, _READ), offset)
    if len(data) == length:
        return data
    parts = [data]
    got = len(data)
    while data and got < length:
        data = os.pread(fd, min(length - got, _READ), offset + got)
        parts.append(data)
        got += len(data)
    if got < length:
        raise OutputProblem("a file in it shrank while it was being sent")
    return b"".join(parts)
