"""The output zip, streamed: built lazily, in order, as the caller pulls it.

Used for the MAP's output folder and by `mis infer` to send a folder. The folder is walked
with descriptors (`walk.py`): a link, at any level and at any moment, contributes nothing.
Before the first byte the whole tree is scanned once, so what would stop the zip halfway (a
file that cannot be read, a name that is not UTF-8) is an `OutputProblem` raised while the
caller can still answer with an error instead of a cut body.

The zip is whole for any size and count: an entry uses the zip64 form as soon as the archive
could pass 4 GiB by its end (counted from an upper bound of every entry before it), or it is
the 65,536th entry or later; below that, the plain form, which every unzip reads.

Deflating is what costs, and ISA-L (deflate.py) lets go of the GIL while it works, so with
`workers` > 1 it runs on that many threads (pigz's idea, within Python):

- the walk (`_plan`) runs ahead on a thread of its own and turns the tree into steps, in
  archive order; a pool runs each step's work, and the caller's thread sends the results in
  that same order (`_Assembler`), so the zip is the same for any number of workers;
- small files are read by the walk and handed over in batches (`_Batch`: about 256 KiB or
  64 files) whose local headers carry sizes and CRC up front;
- a file over 1 MiB is sent in pieces of 1 MiB (`_Piece`), each deflated on its own, primed
  with the 32 KiB before it (deflate's window, so nothing is lost at the seams) and ended
  with a sync flush (an empty stored block), so the pieces join into one deflate stream; the
  last one finishes it (the 32 KiB it was primed with must be what the piece before sent,
  checked by CRC, or the file changed between two reads). Their CRCs are combined in order;
  sizes and CRC follow in a data descriptor. A stored file over 1 MiB is checksummed in
  pieces first, since a stored entry's header carries its CRC, then sent in pieces (and
  checked against that CRC);
- memory is bounded by a window (`_Window`) of three pieces' worth per worker: each step
  counts for its bytes from when the walk makes it until it is sent, and the walk waits
  for room (so it runs ahead of the sender, but not far);
- the very first entry goes out at once: a deflated one as a streamed entry (its header
  first), anything else alone, so the response starts as soon as the output was scanned.

With one worker the same steps run one after the other on the caller's thread, no pool; with
more, the first step runs there too, and the threads start once its bytes are out.
"""

from __future__ import annotations

import datetime
import os
import stat
import threading
import zlib
from collections import deque
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from mis_adapters.cpus import worker_count
from mis_adapters.storage import deflate
from mis_adapters.storage.walk import (
    Member,
    OutputProblem,
    OutputTooLarge,
    Walker,
    open_top,
    scan,
)
from mis_adapters.storage.zipformat import DEFLATED, STORED, Entry, crc32_combine, end_of_archive

_CHUNK = 1024 * 1024  # what the caller gets at most at a time
_PIECE = 1024 * 1024  # a larger file is read, deflated and sent this much at a time
_HISTORY = 32 * 1024  # deflate's window: the bytes before a piece that prime its compressor
_BATCH_BYTES = 256 * 1024  # small files go to a worker together, this many bytes of them...
_BATCH_FILES = 64  # ...or this many, whichever comes first
_PER_WORKER = 3  # pieces' worth of bytes in flight per worker
_ENTRY_COST = 512  # what an entry counts for in the window besides its data
_READ = 1024 * 1024  # the most read at once from a file
_ZIP_ENTRY_MODE = stat.S_IFREG | 0o644
_ZIP_DIR_MODE = stat.S_IFDIR | 0o755
COMPRESSION_POLICIES = ("adaptive", "deflate", "stored")
# Whether a file compresses is judged on this many bytes of its middle (4 KiB tell pixel
# noise from what deflate can shrink as well as 16 KiB, at a third of the time: ~0.1 ms
# here, paid by the first file before the response starts); smaller files always deflate.
_SAMPLE = 4 * 1024
_SAMPLED_FROM = 64 * 1024
_WORTH_IT = 0.9  # deflate when the sample shrinks below this fraction
_ZIP32_MAX_OFFSET = 0xFFFFFFFF
_ZIP32_MAX_ENTRIES = 0xFFFF
# Per entry, beyond its name and data: local header (30), extra fields (zip64 20, time 9),
# data descriptor (24 at most), with room to spare.
_ENTRY_OVERHEAD = 128


def zip_folder(
    folder: Path, level: int, compression: str = "adaptive", max_bytes: int = 0, workers: int = 0
) -> Generator[bytes, None, None]:
    """Zip bytes of `folder` in chunks of up to 1 MiB, built lazily as the caller pulls them.

    `compression`: "deflate" every file at `level`; "stored" (no compression); "adaptive"
    deflates only files whose middle compresses, since deflating already-compressed pixels
    costs ~25 ms per MB here and saves nothing. `workers`: threads deflating (server.workers:
    0 is auto, 1 none besides the caller's). Raises OutputProblem, before the first chunk
    when it can be known then; OutputTooLarge, before it, when the files add up to more
    than `max_bytes` (0: no bound). Closing it stops the threads and closes every file.
    """
    top = open_top(folder)
    files = _Files()
    try:
        scan(top, max_bytes)
        plan = _plan(top, level, compression, files, max_bytes)
        steps = _steps(plan, worker_count(workers))
        try:
            yield from _rechunk(_Assembler(files).parts(steps))
        finally:
            steps.close()
    finally:
        files.close_all()
        os.close(top)


# --- what is sent, step by step ---------------------------------------------------------


@attrs.define
class _Packed:
    """Ready-made entries: their local headers and data, and where each one starts in it."""

    data: bytes
    entries: list[tuple[int, Entry]]


@attrs.frozen
class _Batch:
    """Small entries, their data read already (a folder's is empty)."""

    entries: list[tuple[Entry, bytes]]
    level: int

    @property
    def cost(self) -> int:
        return sum(len(data) + _ENTRY_COST for _, data in self.entries)

    def run(self) -> _Packed:
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
        return _Packed(b"".join(parts), placed)


@attrs.frozen
class _Open:
    """A large (or the first) entry begins: its local header goes out before its data."""

    entry: Entry
    cost: int = _ENTRY_COST


@attrs.frozen
class _Piece:
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

    def run(self) -> _Sent:
        data = _pread_exactly(self.fd, self.offset, self.length)
        crc = zlib.crc32(data)
        if not self.send:
            return _Sent(b"", crc)
        if self.level is None:
            return _Sent(data, crc)
        history = _pread_exactly(
            self.fd, max(0, self.offset - _HISTORY), min(self.offset, _HISTORY)
        )
        deflater = deflate.compressor(self.level, history)
        flush = deflate.FINISH if self.last else deflate.SYNC_FLUSH
        return _Sent(
            deflater.compress(data) + deflater.flush(flush),
            crc,
            zlib.crc32(history),
            zlib.crc32(data[-_HISTORY:]),
        )


@attrs.frozen
class _Sent:
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
class _Close:
    """A large entry's data is all out: its descriptor (or its check), and its file closed."""

    fd: int
    cost: int = 0


_Step = _Batch | _Open | _Piece | _Close


def _plan(
    top: int, level: int, compression: str, files: _Files, max_bytes: int = 0
) -> Iterator[_Step]:
    """The steps that send the tree under `top`, in archive order. Small files are read and
    closed here; a large file's descriptor is handed to `files` until its `_Close`. The
    files' sizes are held to `max_bytes` again, as they are opened here: a MAP still running
    after the scan could have grown them since (then the zip stops, cut short)."""
    written = 0  # an upper bound of the archive's size so far
    total = 0  # the files' sizes so far
    count = 0
    batch: list[tuple[Entry, bytes]] = []
    batched = 0  # bytes in the batch
    walk = iter(Walker(top))
    try:
        for member in walk:
            count += 1
            if member.fd is None:
                name = member.name.encode()
                written += _ENTRY_OVERHEAD + len(name)
                zip64 = _needs_zip64(count, written)
                batch.append((Entry.at(name, _ZIP_DIR_MODE, _mtime(member), STORED, zip64), b""))
            else:
                total += member.info.st_size
                if max_bytes and total > max_bytes:
                    os.close(member.fd)
                    raise OutputTooLarge(f"its files add up to more than {max_bytes} bytes")
                entry, data, written = _file(member, member.fd, count, written, compression)
                if data is None:  # large, or the first and deflated: its header at once
                    files.hand_over(member.fd)
                    if batch:
                        yield _Batch(batch, level)
                        batch, batched = [], 0
                    deflate = level if entry.method == DEFLATED else None
                    yield from _large(entry, member.fd, member.info.st_size, deflate)
                    continue
                batch.append((entry, data))
                batched += len(data)
            if count == 1 or batched >= _BATCH_BYTES or len(batch) >= _BATCH_FILES:
                yield _Batch(batch, level)
                batch, batched = [], 0
        if batch:
            yield _Batch(batch, level)
    finally:
        walk.close()  # type: ignore[attr-defined]


def _file(
    member: Member, fd: int, count: int, written: int, compression: str
) -> tuple[Entry, bytes | None, int]:
    """The `count`-th member's entry; its data if it goes in a batch (`fd` then closed, else
    left open); the archive's upper bound with it."""
    size = member.info.st_size
    try:
        deflate = compression == "deflate" or (compression == "adaptive" and _compresses(fd, size))
        name = member.name.encode()
        written += _ENTRY_OVERHEAD + len(name) + (_deflate_bound(size) if deflate else size)
        method = DEFLATED if deflate else STORED
        entry = Entry.at(
            name, _ZIP_ENTRY_MODE, _mtime(member), method, _needs_zip64(count, written)
        )
        if size > _PIECE or (deflate and count == 1):
            return entry, None, written
        data = _pread_exactly(fd, 0, size)
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return entry, data, written


def _large(entry: Entry, fd: int, size: int, level: int | None) -> Iterator[_Step]:
    """A large file's steps, deflated at `level` or stored (None): pieces of 1 MiB (one,
    empty, for an empty file)."""
    if level is not None:
        entry.streamed = True
    else:  # a stored entry's header carries its CRC: checksum it first
        for offset, length, last in _spans(size):
            yield _Piece(fd, offset, length, None, last, send=False)
    yield _Open(entry)
    for offset, length, last in _spans(size):
        yield _Piece(fd, offset, length, level, last, send=True)
    yield _Close(fd)


def _spans(size: int) -> Iterator[tuple[int, int, bool]]:
    """(offset, length, whether last) of each piece of a file of `size` bytes."""
    if size == 0:
        yield 0, 0, True
    for offset in range(0, size, _PIECE):
        length = min(_PIECE, size - offset)
        yield offset, length, offset + length == size


class _Assembler:
    """Turns the steps' results, in order, into the zip's bytes: it alone knows the offsets,
    so it writes the central directory, and it closes a large file once it is sent."""

    def __init__(self, files: _Files) -> None:
        self._files = files
        self._offset = 0
        # The central directory so far: its records back to back in blocks of up to 1 MiB,
        # ~100 bytes an entry (a bytes object for each would add ~40, joining them at the
        # end a second copy, and one growing buffer a second copy each time it moves)
        self._central = [bytearray()]
        self._entries = 0
        self._zip64 = False
        self._open: tuple[Entry, int] | None = None  # the large entry being sent, its offset
        self._crc = self._length = self._compressed = 0  # of the pieces since the last open
        self._tail = 0  # CRC of the last 32 KiB that the last deflated piece sent

    def parts(self, steps: Iterable[tuple[_Step, Any]]) -> Iterator[bytes]:
        for step, result in steps:
            part = self._take(step, result)
            self._offset += len(part)
            yield part
        size = sum(len(block) for block in self._central)
        for block in self._central:
            yield bytes(block)
            block.clear()
        yield end_of_archive(self._entries, self._offset, size, self._zip64)

    def _take(self, step: _Step, result: Any) -> bytes:
        if isinstance(step, _Batch):
            packed: _Packed = result
            for start, entry in packed.entries:
                self._add(entry, self._offset + start)
            return packed.data
        if isinstance(step, _Piece):
            sent: _Sent = result
            if step.send and step.level is not None:
                if step.offset and sent.history != self._tail:
                    raise OutputProblem("a file in it changed while it was being sent")
                self._tail = sent.tail
            self._crc = crc32_combine(self._crc, sent.crc, step.length)
            self._length += step.length
            self._compressed += len(sent.data)
            return sent.data
        if isinstance(step, _Open):
            entry = step.entry
            if not entry.streamed:  # its checksum pass came just before
                entry.crc, entry.size, entry.compressed = self._crc, self._length, self._length
            self._open = (entry, self._offset)
            self._crc = self._length = self._compressed = 0
            return entry.local_header()
        return self._close(step)

    def _close(self, step: _Close) -> bytes:
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
        record = entry.central_header(offset)
        if len(self._central[-1]) + len(record) > _CHUNK:
            self._central.append(bytearray())
        self._central[-1] += record
        self._entries += 1


# --- running the steps ------------------------------------------------------------------


def _steps(plan: Iterator[_Step], workers: int) -> Generator[tuple[_Step, Any], None, None]:
    """The first step done on the caller's thread, the rest on `workers` threads (or there
    too, for one): the response's first bytes do not wait for the pool and the walk's
    thread to start (about 1 ms, a fifth of the time from the MAP's end to the first byte)."""
    try:
        first = next(plan, None)
        if first is None:
            return
        yield first, _work(first)
    except BaseException:
        plan.close()  # type: ignore[attr-defined]
        raise
    rest = _serial(plan) if workers <= 1 else _Pipeline(plan, workers).steps()
    try:
        yield from rest
    finally:
        rest.close()


def _serial(plan: Iterator[_Step]) -> Generator[tuple[_Step, Any], None, None]:
    """Each step's work done as it comes, on the caller's thread."""
    try:
        for step in plan:
            yield step, _work(step)
    finally:
        plan.close()  # type: ignore[attr-defined]


def _work(step: _Step) -> Any:
    return step.run() if isinstance(step, _Batch | _Piece) else None


# A step and its work on the pool (None: nothing to do but send it), or what stopped the walk.
_Item = tuple[_Step, Future[Any] | None] | BaseException


class _Window:
    """The steps in flight, in order, and what they may hold in all: `limit` bytes (a step
    bigger than that goes alone). The walk waits for room; the sender frees it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.peak = 0  # the most ever held (tests look)
        self.waits = 0  # times the walk had to wait for room (tests look)
        self._items: deque[_Item] = deque()
        self._changed = threading.Condition()
        self._ended = False
        self.stopped = False

    def reserve(self, cost: int) -> bool:
        """Room for `cost` more (False once stopped)."""
        with self._changed:
            if self.held and self.held + cost > self.limit and not self.stopped:
                self.waits += 1
                while self.held and self.held + cost > self.limit and not self.stopped:
                    self._changed.wait()
            if self.stopped:
                return False
            self.held += cost
            self.peak = max(self.peak, self.held)
            return True

    def put(self, item: _Item) -> None:
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def end(self) -> None:
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def get(self) -> _Item | None:
        """The next step in order, once there is one; None after the last."""
        with self._changed:
            while not self._items and not self._ended:
                self._changed.wait()
            return self._items.popleft() if self._items else None

    def release(self, cost: int) -> None:
        with self._changed:
            self.held -= cost
            self._changed.notify_all()

    def stop(self) -> None:
        with self._changed:
            self.stopped = True
            self._changed.notify_all()


class _Pipeline:
    """The walk on a thread of its own, each step's work on a pool of `workers`, the results
    taken in order by whoever iterates `steps()`."""

    def __init__(self, plan: Iterator[_Step], workers: int) -> None:
        self._plan = plan
        self.window = _Window(workers * _PER_WORKER * _PIECE)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="mis-pack")
        self._walker = threading.Thread(target=self._walk, name="mis-pack-walk", daemon=True)

    def steps(self) -> Generator[tuple[_Step, Any], None, None]:
        self._walker.start()
        try:
            while (item := self.window.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                step, work = item
                yield step, work.result() if work is not None else None
                self.window.release(step.cost)
        finally:
            self.window.stop()
            self._walker.join()
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _walk(self) -> None:
        window = self.window
        try:
            for step in self._plan:
                if not window.reserve(step.cost):
                    return
                work = self._pool.submit(step.run) if isinstance(step, _Batch | _Piece) else None
                window.put((step, work))
                if window.stopped:
                    return
        except BaseException as exc:  # handed to the sender, in its place
            window.put(exc)
        finally:
            self._plan.close()  # type: ignore[attr-defined]
            window.end()


class _Files:
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


# --- helpers ----------------------------------------------------------------------------


def _needs_zip64(count: int, end_bound: int) -> bool:
    return count > _ZIP32_MAX_ENTRIES or end_bound > _ZIP32_MAX_OFFSET


def _deflate_bound(size: int) -> int:
    """Deflate's worst case for `size` bytes (zlib's deflateBound, generously rounded up;
    also for pieces of 1 MiB, which add a few bytes each: a sync flush, a block header)."""
    return size + (size >> 10) + 1024


def _compresses(fd: int, size: int) -> bool:
    """Whether deflate pays: judged on a sample from the file's middle (past any header)."""
    if size < _SAMPLED_FROM:
        return True  # small files cost little either way
    sample = os.pread(fd, _SAMPLE, size // 2)
    return len(deflate.compress(sample, 1)) < _WORTH_IT * max(len(sample), 1)


_EARLIEST = datetime.datetime(1980, 1, 1)  # the zip format's first date
_LATEST = datetime.datetime.fromtimestamp(2**31 - 1)  # its 32-bit extended timestamp's last


def _mtime(member: Member) -> datetime.datetime:
    """The modification time, within what the zip fields can hold (a MAP may set any)."""
    seconds = min(max(member.info.st_mtime, _EARLIEST.timestamp()), _LATEST.timestamp())
    return datetime.datetime.fromtimestamp(seconds)


def _pread_exactly(fd: int, offset: int, length: int) -> bytes:
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


def _rechunk(parts: Iterable[bytes]) -> Iterator[bytes]:
    """Merge small parts, and cut large ones, so each hop between the worker thread and the
    event loop moves up to 1 MiB; the first parts go out small, so the response starts as
    soon as the MAP is done: the very first (the first entry, or a large one's header) at
    once."""
    buffer = bytearray()
    threshold = 1
    for part in parts:
        if not buffer and threshold <= len(part) <= _CHUNK:
            yield part
            threshold = min(max(threshold * 4, 16 * 1024), _CHUNK)
            continue
        buffer += part
        while len(buffer) >= threshold:
            size = min(len(buffer), _CHUNK)
            with memoryview(buffer) as view:  # one copy, not a slice and then its copy
                chunk = bytes(view[:size])
            del buffer[:size]
            yield chunk
            threshold = min(max(threshold * 4, 16 * 1024), _CHUNK)
    if buffer:
        yield bytes(buffer)
