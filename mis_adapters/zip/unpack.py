"""Writing a checked archive's entries into the input folder, on worker threads.

The archive has been judged from its directory already (reader.py); here each entry's local
header is checked against its record and its data written, held to its declared size and CRC:
deflate output is capped at the declared size (a lying entry is refused one byte past it),
stored data is copied as is. Files are created relative to open folders, never through a
link, with the permission bits the caller gives (`Modes`) set explicitly, whatever the umask.
Two names that land on one path (a duplicate, a name that is both a file and a folder, names
the file system takes as the same) are refused.

Large entries are inflated and written by a few threads while the directory is read in order:
a bounded window of entries is in flight, each worker keeps its own few folders open, and the
first refusal stops the rest. Small entries are written by the reading thread itself: for
them the cost is creating the file, kernel work that threads of one process only contend
for. An archive of many small entries has them written by worker processes instead
(unpack_processes.py), with this module's EntryWriter.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import zlib
from array import array
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import attrs

from mis_adapters.open_flags import NEW_FILE
from mis_adapters.zip.constants import STORED, UNIX
from mis_adapters.zip.errors import BadArchive, corrupt
from mis_adapters.zip.folders import Folders, file_and_folder, umask_strips
from mis_adapters.zip.index import Record, local_data_start, records
from mis_adapters.zip.layout import Layout
from mis_adapters.zip.names import parts

_COPY_CHUNK = 1024 * 1024
# Compressed bytes read at a time: small, as each capped call copies what it left unread.
_INFLATE_READ = 128 * 1024
_IN_FLIGHT_PER_WORKER = 16
# Entries smaller than this (compressed) are written by the thread reading the directory:
# creating a small file is kernel work that two threads of one process contend for (100,000
# files of 4 KB on a journaled ext4: 4.1 s on one thread, 7.9 s and twice the kernel time on
# two); larger ones are inflated and copied on the workers.
PARALLEL_FROM = 64 * 1024


@attrs.frozen
class Modes:
    """The permission bits of what an archive is unpacked into: the caller's policy (the
    storage adapter's layout), not the zip package's."""

    file: int
    folder: int


def write_entries(
    source: BinaryIO,
    layout: Layout,
    bounds: array[int],
    destination: Path,
    modes: Modes,
    workers: int,
    small: bool = True,
) -> int:
    """Write every entry of the checked archive `source` into `destination`, with `modes`;
    the file count. `bounds[i]`: where the data of the i-th record must end (see
    reader._plan). `small`: False leaves the entries under PARALLEL_FROM out (worker
    processes write those)."""
    writer = EntryWriter(source, destination, modes)
    try:
        if workers <= 1:
            return sum(
                writer.entry(record, bounds[index])
                for index, record in enumerate(records(source, layout))
                if small or not is_small(record)
            )
        return _in_parallel(writer, source, layout, bounds, workers, small)
    finally:
        writer.close()


def is_small(record: Record) -> bool:
    """Written where it is read (or by a worker process), not on the pool."""
    return record.compressed_size < PARALLEL_FROM


def _in_parallel(
    writer: EntryWriter,
    source: BinaryIO,
    layout: Layout,
    bounds: array[int],
    workers: int,
    small: bool,
) -> int:
    files = 0
    window: deque[Future[int]] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="mis-unpack") as pool:
        try:
            for index, record in enumerate(records(source, layout)):
                if is_small(record):
                    if small:
                        files += writer.entry(record, bounds[index])
                    continue
                window.append(pool.submit(writer.entry, record, bounds[index]))
                if len(window) >= workers * _IN_FLIGHT_PER_WORKER:
                    files += window.popleft().result()
            while window:
                files += window.popleft().result()
        finally:
            for pending in window:
                pending.cancel()  # after a refusal; those running finish, then the pool ends
    return files


class EntryWriter:
    """Writes single entries; safe to call from several threads at once."""

    def __init__(self, source: BinaryIO, destination: Path, modes: Modes) -> None:
        self._source = source
        self._destination = destination
        self._modes = modes
        self._chmod = umask_strips(modes.file)
        self._local = threading.local()
        self._all: list[Folders] = []
        self._lock = threading.Lock()

    def _folders(self) -> Folders:
        folders: Folders | None = getattr(self._local, "folders", None)
        if folders is None:
            folders = Folders(self._destination, self._modes.folder)
            self._local.folders = folders
            with self._lock:
                self._all.append(folders)
        return folders

    def entry(self, record: Record, bound: int) -> int:
        """Write one entry; 1 for a file, 0 for a folder."""
        components = parts(record.name)
        try:
            folders = self._folders()
            if is_folder(record):
                folders.enter(components)
                return 0
            parent = folders.enter(components[:-1])
            start = local_data_start(self._source, record)
            if start + record.compressed_size > bound:
                raise BadArchive("The zip archive has overlapping entries, as zip bombs do.")
            name = components[-1]
            _write_file(self._source, record, start, parent, name, self._modes.file, self._chmod)
        except OSError as exc:
            raise _refusal(exc) from None
        except zlib.error:
            raise corrupt("an entry's compressed data is damaged") from None
        return 1

    def close(self) -> None:
        for folders in self._all:
            folders.close()


def unix_kind(record: Record) -> int:
    """The file type a Unix archiver recorded, or 0 when there is none."""
    return stat.S_IFMT(record.external_attr >> 16) if record.creator_system == UNIX else 0


def is_folder(record: Record) -> bool:
    return record.name.endswith("/") or stat.S_ISDIR(unix_kind(record))


def _write_file(
    source: BinaryIO, record: Record, start: int, parent: int, name: str, mode: int, chmod: bool
) -> None:
    try:
        fd = os.open(name, os.O_WRONLY | NEW_FILE, mode, dir_fd=parent)
    except FileExistsError:
        existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISDIR(existing.st_mode):
            raise file_and_folder() from None
        raise BadArchive(
            "The zip archive has two entries with the same name (or names the payload volume "
            "takes as the same, such as names differing only in letter case)."
        ) from None
    try:
        if chmod:
            os.fchmod(fd, mode)  # whatever the umask
        copy = _copy_stored if record.method == STORED else _inflate
        crc = copy(source.fileno(), start, record.compressed_size, record.size, fd)
    finally:
        os.close(fd)
    if crc != record.crc:
        raise corrupt("an entry's data does not match its checksum (CRC)")


def _copy_stored(source: int, start: int, length: int, size: int, sink: int) -> int:
    crc = 0
    position, end = start, start + length
    while position < end:
        chunk = os.pread(source, min(_COPY_CHUNK, end - position), position)
        if not chunk:
            raise corrupt("an entry's data is cut short")
        crc = zlib.crc32(chunk, crc)
        _write_all(sink, chunk)
        position += len(chunk)
    return crc


def _inflate(source: int, start: int, length: int, size: int, sink: int) -> int:
    """Deflate data, never producing more than `size` bytes plus one (which refuses it)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    produced = crc = 0
    position, end = start, start + length

    def emit(data: bytes) -> None:
        nonlocal produced, crc
        produced += len(data)
        if produced > size:
            raise BadArchive(
                "The zip archive has an entry that expands beyond the size it declares, as "
                "zip bombs do."
            )
        crc = zlib.crc32(data, crc)
        _write_all(sink, data)

    def room() -> int:
        return min(_COPY_CHUNK, size - produced + 1)

    while position < end and not inflater.eof:
        data = os.pread(source, min(_INFLATE_READ, end - position), position)
        if not data:
            raise corrupt("an entry's data is cut short")
        position += len(data)
        while data and not inflater.eof:
            emit(inflater.decompress(data, room()))
            data = inflater.unconsumed_tail
    while not inflater.eof:  # the input is all in; what the inflater still holds
        out = inflater.decompress(b"", room())
        if not out:
            raise corrupt("an entry's compressed data ends early")
        emit(out)
    if produced != size:
        raise corrupt("an entry is shorter than the size it declares")
    return crc


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _refusal(exc: OSError) -> Exception:
    """A name the file system refuses is the archive's fault (400), not the service's (500);
    its name is never repeated (names may carry patient data)."""
    if exc.errno == errno.ENAMETOOLONG:
        return BadArchive(
            "The zip archive has an entry name longer than the payload volume can hold."
        )
    if exc.errno in (errno.EILSEQ, errno.EINVAL):
        return BadArchive(
            "The zip archive has an entry name the payload volume cannot hold (characters "
            "its file system refuses)."
        )
    if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        return BadArchive(
            "The zip archive has two entries that land on one path (the payload volume takes "
            "their names as the same)."
        )
    return exc
