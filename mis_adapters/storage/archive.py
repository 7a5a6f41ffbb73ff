"""Safe extraction of an uploaded zip: refuse anything unsafe, never skip it silently.

Everything that can be judged from the archive's directory is judged before any data is read
or any file is written, with memory that does not grow with what the archive claims:

- 413 (PayloadTooLarge): an entry count or central directory size over the limits (read from
  the end records, before any entry is parsed), too many bytes once expanded, or a suspicious
  compression ratio;
- 400 (InvalidInput): not a zip, a damaged or inconsistent one (overlapping entries, a local
  header that disagrees with its directory record, zip64 fields that lie), encrypted entries,
  a compression method other than stored or deflate, unsafe names (absolute, `..`, empty
  components, drive letters, backslashes, NUL bytes, nested too deep), names the payload
  volume cannot hold (too long for it), symbolic links and other special files.

While writing, every entry is held to its declared size (deflate output is capped at it, so a
lying entry is refused after one byte too many) and its CRC; two names that land on one path
(a duplicate, a name that is both a file and a folder, names the file system takes as the
same) are refused. Files are created relative to open folders, never through a link, with
their permission bits set explicitly (group-readable, nothing for other users).
"""

from __future__ import annotations

import errno
import os
import re
import stat
import zlib
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import attrs

from mis_adapters.storage.zipindex import (
    FLAG_ENCRYPTED,
    FLAG_STRONG_ENCRYPTION,
    LOCAL_HEADER_BYTES,
    Layout,
    Record,
    corrupt,
    local_data_start,
    read_layout,
    records,
)
from mis_core.errors import InsufficientStorage, InvalidInput, PayloadTooLarge

INPUT_FILE_MODE = 0o640  # the MAP may read through MIS's group; other users get nothing
INPUT_FOLDER_MODE = 0o750
MAX_DEPTH = 128  # folders in an entry's path; bounds the folders held open while writing
_DRIVE = re.compile(r"^[A-Za-z]:")
# Small archives cannot hurt whatever their ratio; the ratio rule applies above this size.
RATIO_APPLIES_ABOVE_BYTES = 64 * 1024 * 1024
# The central directory may hold this much per entry allowed, on average, plus a fixed margin.
DIRECTORY_BYTES_PER_ENTRY = 1024
DIRECTORY_BYTES_MARGIN = 1024 * 1024
_COPY_CHUNK = 1024 * 1024
# Compressed bytes read at a time: small, as each capped call copies what it left unread.
_INFLATE_READ = 128 * 1024
_FULL = (errno.ENOSPC, errno.EDQUOT)
_STORED, _DEFLATED = 0, 8
_METHOD_NAMES = {
    1: "shrink",
    6: "implode",
    9: "deflate64",
    12: "bzip2",
    14: "LZMA",
    93: "Zstandard",
    95: "xz",
    98: "PPMd",
    99: "AES encryption",
}
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@attrs.frozen
class ExtractLimits:
    max_extracted_bytes: int
    max_entries: int
    max_compression_ratio: float

    @property
    def max_directory_bytes(self) -> int:
        return DIRECTORY_BYTES_MARGIN + self.max_entries * DIRECTORY_BYTES_PER_ENTRY


@attrs.frozen
class _Volume:
    """What the payload volume can hold under the destination folder."""

    max_name_bytes: int
    max_relative_path_bytes: int

    @classmethod
    def of(cls, destination: Path) -> _Volume:
        prefix = len(os.fsencode(destination.absolute())) + 1
        path_max = os.pathconf(destination, "PC_PATH_MAX")
        return cls(os.statvfs(destination).f_namemax, path_max - 1 - prefix)


def storage_full_error() -> InsufficientStorage:
    return InsufficientStorage(
        "The payload volume ran out of space while handling this request; nothing of it was "
        "kept. Try a smaller input, or ask the administrator to give the payload volume more "
        "space."
    )


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in _FULL


def extract_archive(archive: Path, destination: Path, limits: ExtractLimits) -> int:
    """Unpack `archive` into the existing, empty folder `destination`; return the file count."""
    try:
        with open(archive, "rb") as source:
            layout = read_layout(source)
            _check_layout(layout, limits)
            bounds = _plan(source, layout, limits, _Volume.of(destination))
            return _write(source, layout, bounds, destination)
    except zlib.error:
        raise corrupt("an entry's compressed data is damaged") from None
    except OSError as exc:
        if is_disk_full(exc):
            raise storage_full_error() from None
        raise


def _check_layout(layout: Layout, limits: ExtractLimits) -> None:
    if layout.entries > limits.max_entries:
        raise PayloadTooLarge(
            f"The zip archive has {layout.entries} entries; this service accepts at most "
            f"{limits.max_entries} (server.max_entries)."
        )
    if layout.directory_size > limits.max_directory_bytes:
        raise PayloadTooLarge(
            f"The zip archive's central directory is {layout.directory_size} bytes; this "
            f"service reads at most {limits.max_directory_bytes} ("
            f"{DIRECTORY_BYTES_PER_ENTRY} bytes per entry that server.max_entries allows, "
            "plus 1 MiB)."
        )


def _plan(source: BinaryIO, layout: Layout, limits: ExtractLimits, volume: _Volume) -> array[int]:
    """Check every record; return, per record, the offset its data must end before (the next
    entry's header, or the central directory): the bound that keeps entries from overlapping."""
    starts: array[int] = array("Q")
    ends: array[int] = array("Q")
    declared = compressed = 0
    for record in records(source, layout):
        is_dir = _check_record(record, volume)
        end = record.header_offset + LOCAL_HEADER_BYTES + len(record.raw_name)
        end += record.compressed_size
        if end > layout.directory_offset:
            raise InvalidInput(
                "The zip archive has overlapping entries (an entry's data runs into the "
                "central directory), as zip bombs do."
            )
        starts.append(record.header_offset)
        ends.append(end)
        if not is_dir:
            declared += record.size
            compressed += record.compressed_size
    if declared > limits.max_extracted_bytes:
        raise _too_large_expanded(limits)
    if (
        declared > RATIO_APPLIES_ABOVE_BYTES
        and declared > compressed * limits.max_compression_ratio
    ):
        raise PayloadTooLarge(
            f"The zip archive expands {declared / max(compressed, 1):.0f} times its compressed "
            f"size; this service accepts at most {limits.max_compression_ratio:g} "
            "(server.max_compression_ratio), to guard against zip bombs."
        )
    return _overlap_bounds(starts, ends, layout.directory_offset)


def _overlap_bounds(starts: array[int], ends: array[int], directory: int) -> array[int]:
    order = sorted(range(len(starts)), key=starts.__getitem__)
    bounds = array("Q", bytes(8 * len(starts)))
    for position, here in enumerate(order):
        following = position + 1
        bound = starts[order[following]] if following < len(order) else directory
        if ends[here] > bound:
            raise InvalidInput("The zip archive has overlapping entries, as zip bombs do.")
        bounds[here] = bound
    return bounds


def _check_record(record: Record, volume: _Volume) -> bool:
    """Refuse what cannot be extracted safely; whether the entry is a folder."""
    if record.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION):
        raise InvalidInput(
            "The zip archive has encrypted entries; this service cannot read them. Send an "
            "archive without a password."
        )
    if record.method not in (_STORED, _DEFLATED):
        method = _METHOD_NAMES.get(record.method, f"number {record.method}")
        raise InvalidInput(
            f"The zip archive uses the {method} compression method; this service reads only "
            "stored and deflate entries (what zip tools write by default). Re-create it with "
            "deflate or no compression."
        )
    problem = _name_problem(record.name, volume)
    if problem:
        raise InvalidInput(f"The zip archive has an entry name that cannot be used: {problem}.")
    kind = _unix_kind(record)
    if stat.S_ISLNK(kind):
        raise InvalidInput(
            "The zip archive holds a symbolic link; only regular files and folders are "
            "accepted. Re-create it without links (zip --symlinks is not wanted)."
        )
    if kind and not (stat.S_ISDIR(kind) or stat.S_ISREG(kind)):
        raise InvalidInput(
            "The zip archive holds a device, pipe or other special file; only regular "
            "files and folders are accepted."
        )
    is_dir = _is_folder(record)
    if not is_dir and record.method == _STORED and record.compressed_size != record.size:
        raise corrupt("a stored entry's two sizes disagree")
    return is_dir


def _unix_kind(record: Record) -> int:
    """The file type a Unix archiver recorded, or 0 when there is none."""
    return stat.S_IFMT(record.external_attr >> 16) if record.creator_system == 3 else 0


def _is_folder(record: Record) -> bool:
    return record.name.endswith("/") or stat.S_ISDIR(_unix_kind(record))


def _name_problem(name: str, volume: _Volume) -> str:
    """Why `name` is unsafe or cannot be held by the volume, or "" for a plain relative path."""
    if "\x00" in name:
        return "it contains a NUL byte"
    if "\\" in name:
        return "it contains a backslash (make the archive with forward slashes)"
    if name.startswith("/"):
        return "it is an absolute path"
    if _DRIVE.match(name):
        return "it starts with a drive letter"
    if len(name.encode()) > volume.max_relative_path_bytes:
        return (
            f"it is longer than {volume.max_relative_path_bytes} bytes, the longest path the "
            "payload volume can hold inside an input folder"
        )
    parts = _parts(name)
    if len(parts) > MAX_DEPTH:
        return f"it is nested more than {MAX_DEPTH} folders deep"
    for part in parts:
        if part in ("", ".", ".."):
            return f"it has a {part or 'empty'!r} path component"
        if len(part.encode()) > volume.max_name_bytes:
            return (
                f"a component is longer than {volume.max_name_bytes} bytes, the longest name "
                "the payload volume can hold"
            )
    return ""


def _parts(name: str) -> list[str]:
    return name[:-1].split("/") if name.endswith("/") else name.split("/")


def _write(source: BinaryIO, layout: Layout, bounds: array[int], destination: Path) -> int:
    files = 0
    folders = _Folders(destination)
    try:
        for index, record in enumerate(records(source, layout)):
            parts = _parts(record.name)
            try:
                if _is_folder(record):
                    folders.enter(parts)
                    continue
                parent = folders.enter(parts[:-1])
                start = local_data_start(source, record)
                if start + record.compressed_size > bounds[index]:
                    raise InvalidInput("The zip archive has overlapping entries, as zip bombs do.")
                _write_file(source, record, start, parent, parts[-1])
            except OSError as exc:
                raise _refusal(exc) from None
            files += 1
    finally:
        folders.close()
    return files


def _write_file(source: BinaryIO, record: Record, start: int, parent: int, name: str) -> None:
    try:
        fd = os.open(name, _FILE_CREATE, INPUT_FILE_MODE, dir_fd=parent)
    except FileExistsError:
        existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISDIR(existing.st_mode):
            raise _file_and_folder() from None
        raise InvalidInput(
            "The zip archive has two entries with the same name (or names the payload volume "
            "takes as the same, such as names differing only in letter case)."
        ) from None
    try:
        os.fchmod(fd, INPUT_FILE_MODE)  # whatever the umask
        copy = _copy_stored if record.method == _STORED else _inflate
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
            raise InvalidInput(
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


class _Folders:
    """The folders along the current entry's path, held open and created as needed, so that
    nothing is resolved twice and no link is ever followed; consecutive entries of one folder
    cost no system call."""

    def __init__(self, root: Path) -> None:
        self._root = os.open(root, _DIR_OPEN)
        self._chain: list[tuple[str, int]] = []

    def enter(self, parts: Sequence[str]) -> int:
        keep = 0
        for (held, _), part in zip(self._chain, parts, strict=False):
            if held != part:
                break
            keep += 1
        for _, fd in self._chain[keep:]:
            os.close(fd)
        del self._chain[keep:]
        fd = self._chain[-1][1] if self._chain else self._root
        for part in parts[keep:]:
            fd = _open_or_make_folder(fd, part)
            self._chain.append((part, fd))
        return fd

    def close(self) -> None:
        for _, fd in self._chain:
            os.close(fd)
        self._chain.clear()
        os.close(self._root)


def _open_or_make_folder(parent: int, name: str) -> int:
    try:
        os.mkdir(name, INPUT_FOLDER_MODE, dir_fd=parent)
        created = True
    except FileExistsError:
        created = False
    try:
        fd = os.open(name, _DIR_OPEN, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise _file_and_folder() from None
        raise
    if created:
        os.fchmod(fd, INPUT_FOLDER_MODE)  # whatever the umask
    return fd


def _file_and_folder() -> InvalidInput:
    return InvalidInput("The zip archive has a name that is both a file and a folder.")


def _refusal(exc: OSError) -> Exception:
    """A name the file system refuses is the archive's fault (400), not the service's (500);
    its name is never repeated (names may carry patient data)."""
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidInput(
            "The zip archive has an entry name longer than the payload volume can hold."
        )
    if exc.errno in (errno.EILSEQ, errno.EINVAL):
        return InvalidInput(
            "The zip archive has an entry name the payload volume cannot hold (characters "
            "its file system refuses)."
        )
    if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        return InvalidInput(
            "The zip archive has two entries that land on one path (the payload volume takes "
            "their names as the same)."
        )
    return exc


def _too_large_expanded(limits: ExtractLimits) -> PayloadTooLarge:
    return PayloadTooLarge(
        "The zip archive expands to more than this service accepts "
        f"({limits.max_extracted_bytes} bytes, server.max_extracted_bytes)."
    )
