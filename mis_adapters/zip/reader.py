"""Safe extraction of an uploaded zip: refuse anything unsafe, never skip it silently.

Everything that can be judged from the archive's directory is judged before any data is read
or any file is written, with memory that does not grow with what the archive claims:

- ArchiveTooLarge: an entry count or central directory size over the limits (read from
  the end records, before any entry is parsed), too many bytes once expanded, or a suspicious
  compression ratio;
- BadArchive: not a zip, a damaged or inconsistent one (overlapping entries, zip64
  fields that lie), encrypted entries, a compression method other than stored or deflate,
  unsafe names (the rule of names.py: absolute, `..`, empty components, drive letters,
  backslashes, control characters, nested too deep), names the payload volume cannot hold
  (too long for it), symbolic links and other special files.

What only the data can tell (a local header that disagrees with its record, an entry larger
than it declares, a wrong CRC, names that clash on the file system) is refused while writing
(unpack.py).
"""

from __future__ import annotations

import os
import stat
import zlib
from array import array
from pathlib import Path
from typing import BinaryIO

import attrs

from mis_adapters.cpus import worker_count
from mis_adapters.zip import unpack_processes
from mis_adapters.zip.constants import (
    DEFLATED,
    FLAG_ENCRYPTED,
    FLAG_STRONG_ENCRYPTION,
    STORED,
)
from mis_adapters.zip.errors import ArchiveTooLarge, BadArchive, corrupt
from mis_adapters.zip.index import LOCAL_HEADER_BYTES, Record, records
from mis_adapters.zip.layout import Layout, read_layout
from mis_adapters.zip.names import NameLimits, name_problem
from mis_adapters.zip.unpack import (
    Modes,
    is_folder,
    is_small,
    unix_kind,
    write_entries,
)

__all__ = ["ExtractLimits", "Modes", "extract_archive"]

# Small archives cannot hurt whatever their ratio; the ratio rule applies above this size.
RATIO_APPLIES_ABOVE_BYTES = 64 * 1024 * 1024
# The central directory may hold this much per entry allowed, on average, plus a fixed margin.
DIRECTORY_BYTES_PER_ENTRY = 1024
DIRECTORY_BYTES_MARGIN = 1024 * 1024
# The central directory is read through a buffer this large. With the default 8 KiB, the
# reading thread let go of the interpreter lock for a read every ~180 records and took it
# back at once, so the event loop never got it: busy answers waited up to 500 ms while an
# archive of 100,000 entries was checked (Python hands the lock over on request only when
# its holder has not let go of it meanwhile).
_DIRECTORY_BUFFER = 1024 * 1024
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


@attrs.frozen
class ExtractLimits:
    max_extracted_bytes: int
    max_entries: int
    max_compression_ratio: float

    @property
    def max_directory_bytes(self) -> int:
        return DIRECTORY_BYTES_MARGIN + self.max_entries * DIRECTORY_BYTES_PER_ENTRY


def _volume(destination: Path) -> NameLimits:
    """The names the payload volume can hold under the destination folder."""
    prefix = len(os.fsencode(destination.absolute())) + 1
    path_max = os.pathconf(destination, "PC_PATH_MAX")
    return NameLimits(
        max_path_bytes=path_max - 1 - prefix,
        max_component_bytes=os.statvfs(destination).f_namemax,
        path_why="the longest path the payload volume can hold inside an input folder",
        component_why="the longest name the payload volume can hold",
    )


def extract_archive(
    archive: Path, destination: Path, limits: ExtractLimits, modes: Modes, workers: int
) -> int:
    """Unpack `archive` into the existing, empty folder `destination`, its files and folders
    made with `modes`; return the file count. `workers`: threads writing entries
    (server.workers: 0 is auto, see cpus.py). Raises BadArchive, ArchiveTooLarge, or OSError
    (a full disk among them)."""
    workers = worker_count(workers)
    try:
        with open(archive, "rb", buffering=_DIRECTORY_BUFFER) as source:
            layout = read_layout(source)
            _check_layout(layout, limits)
            plan = _plan(source, layout, limits, _volume(destination))
            if workers > 1 and plan.small >= unpack_processes.PROCESSES_FROM:
                return unpack_processes.write_in_processes(
                    source, layout, plan.bounds, destination, modes, workers
                )
            return write_entries(source, layout, plan.bounds, destination, modes, workers)
    except zlib.error:
        raise corrupt("an entry's compressed data is damaged") from None


def _check_layout(layout: Layout, limits: ExtractLimits) -> None:
    if layout.entries > limits.max_entries:
        raise ArchiveTooLarge(
            f"The zip archive has {layout.entries} entries; this service accepts at most "
            f"{limits.max_entries} (server.max_entries)."
        )
    if layout.directory_size > limits.max_directory_bytes:
        raise ArchiveTooLarge(
            f"The zip archive's central directory is {layout.directory_size} bytes; this "
            f"service reads at most {limits.max_directory_bytes} ("
            f"{DIRECTORY_BYTES_PER_ENTRY} bytes per entry that server.max_entries allows, "
            "plus 1 MiB)."
        )


@attrs.frozen
class _Plan:
    bounds: array[int]  # per record, the offset its data must end before (see _plan)
    small: int  # entries under unpack.PARALLEL_FROM (compressed): see unpack.is_small


def _plan(source: BinaryIO, layout: Layout, limits: ExtractLimits, volume: NameLimits) -> _Plan:
    """Check every record; return, per record, the offset its data must end before (the next
    entry's header, or the central directory): the bound that keeps entries from overlapping;
    and how many are small."""
    starts: array[int] = array("Q")
    ends: array[int] = array("Q")
    declared = compressed = small = 0
    for record in records(source, layout):
        is_dir = _check_record(record, volume)
        end = record.header_offset + LOCAL_HEADER_BYTES + len(record.raw_name)
        end += record.compressed_size
        if end > layout.directory_offset:
            raise BadArchive(
                "The zip archive has overlapping entries (an entry's data runs into the "
                "central directory), as zip bombs do."
            )
        starts.append(record.header_offset)
        ends.append(end)
        small += is_small(record)
        if not is_dir:
            declared += record.size
            compressed += record.compressed_size
    if declared > limits.max_extracted_bytes:
        raise _too_large_expanded(limits)
    if (
        declared > RATIO_APPLIES_ABOVE_BYTES
        and declared > compressed * limits.max_compression_ratio
    ):
        raise ArchiveTooLarge(
            f"The zip archive expands {declared / max(compressed, 1):.0f} times its compressed "
            f"size; this service accepts at most {limits.max_compression_ratio:g} "
            "(server.max_compression_ratio), to guard against zip bombs."
        )
    return _Plan(_overlap_bounds(starts, ends, layout.directory_offset), small)


def _overlap_bounds(starts: array[int], ends: array[int], directory: int) -> array[int]:
    order = sorted(range(len(starts)), key=starts.__getitem__)
    bounds = array("Q", bytes(8 * len(starts)))
    for position, here in enumerate(order):
        following = position + 1
        bound = starts[order[following]] if following < len(order) else directory
        if ends[here] > bound:
            raise BadArchive("The zip archive has overlapping entries, as zip bombs do.")
        bounds[here] = bound
    return bounds


def _check_record(record: Record, volume: NameLimits) -> bool:
    """Refuse what cannot be extracted safely; whether the entry is a folder."""
    if record.flags & (FLAG_ENCRYPTED | FLAG_STRONG_ENCRYPTION):
        raise BadArchive(
            "The zip archive has encrypted entries; this service cannot read them. Send an "
            "archive without a password."
        )
    if record.method not in (STORED, DEFLATED):
        method = _METHOD_NAMES.get(record.method, f"number {record.method}")
        raise BadArchive(
            f"The zip archive uses the {method} compression method; this service reads only "
            "stored and deflate entries (what zip tools write by default). Re-create it with "
            "deflate or no compression."
        )
    problem = name_problem(record.name, volume)
    if problem:
        raise BadArchive(f"The zip archive has an entry name that cannot be used: {problem}.")
    kind = unix_kind(record)
    if stat.S_ISLNK(kind):
        raise BadArchive(
            "The zip archive holds a symbolic link; only regular files and folders are "
            "accepted. Re-create it without links (zip --symlinks is not wanted)."
        )
    if kind and not (stat.S_ISDIR(kind) or stat.S_ISREG(kind)):
        raise BadArchive(
            "The zip archive holds a device, pipe or other special file; only regular "
            "files and folders are accepted."
        )
    is_dir = is_folder(record)
    if not is_dir and record.method == STORED and record.compressed_size != record.size:
        raise corrupt("a stored entry's two sizes disagree")
    return is_dir


def _too_large_expanded(limits: ExtractLimits) -> ArchiveTooLarge:
    return ArchiveTooLarge(
        "The zip archive expands to more than this service accepts "
        f"({limits.max_extracted_bytes} bytes, server.max_extracted_bytes)."
    )
