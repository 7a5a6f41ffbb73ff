"""Safe extraction of an uploaded zip: refuse anything unsafe, never skip it silently.

Refused with InvalidInput (400): not a zip, corrupt data, encrypted entries, absolute paths,
`..` or empty components, drive letters, backslashes, NUL bytes, symbolic links and other
non-regular entries, duplicate names, a name that is both a file and a folder, overlapping
entries. Refused with PayloadTooLarge (413): too many entries, too many bytes once expanded
(declared in the headers, and counted again while writing), or a suspicious compression ratio.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import struct
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import attrs

from mis_core.errors import InsufficientStorage, InvalidInput, PayloadTooLarge

_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_COMPONENT_BYTES = 255
_MAX_PATH_BYTES = 4000
_LOCAL_HEADER_BYTES = 30
# Small archives cannot hurt whatever their ratio; the ratio rule applies above this size.
RATIO_APPLIES_ABOVE_BYTES = 64 * 1024 * 1024
_COPY_CHUNK = 1024 * 1024
_FULL = (errno.ENOSPC, errno.EDQUOT)


@attrs.frozen
class ExtractLimits:
    max_extracted_bytes: int
    max_entries: int
    max_compression_ratio: float


@attrs.frozen
class _Entry:
    info: zipfile.ZipInfo
    path: PurePosixPath
    is_dir: bool


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
        with zipfile.ZipFile(archive) as zf:
            entries = _plan(zf, limits)
            return _write(zf, entries, destination, limits)
    except zipfile.BadZipFile as exc:
        raise InvalidInput(
            f"The upload is not a readable zip archive ({exc}). Send a .zip file made by a "
            "standard zip tool."
        ) from None
    except (zlib.error, EOFError, ValueError, OverflowError, IndexError, struct.error) as exc:
        # what zipfile's decoders raise on hostile headers (bad UTF-8 names, wild offsets)
        raise InvalidInput(
            f"The zip archive is corrupt ({type(exc).__name__}: {exc}). Re-create it and retry."
        ) from None
    except NotImplementedError as exc:
        raise InvalidInput(
            f"The zip archive uses a compression method this service cannot read ({exc}). "
            "Use stored or deflate compression."
        ) from None
    except OSError as exc:
        if is_disk_full(exc):
            raise storage_full_error() from None
        raise


def _plan(zf: zipfile.ZipFile, limits: ExtractLimits) -> list[_Entry]:
    infos = zf.infolist()
    if len(infos) > limits.max_entries:
        raise PayloadTooLarge(
            f"The zip archive has {len(infos)} entries; this service accepts at most "
            f"{limits.max_entries} (server.max_entries)."
        )
    entries = [_check_entry(info) for info in infos]
    _refuse_duplicates_and_conflicts(entries)
    _refuse_overlaps(zf, [e.info for e in entries if not e.is_dir])
    declared = sum(e.info.file_size for e in entries if not e.is_dir)
    if declared > limits.max_extracted_bytes:
        raise _too_large_expanded(limits)
    compressed = sum(e.info.compress_size for e in entries if not e.is_dir)
    if (
        declared > RATIO_APPLIES_ABOVE_BYTES
        and declared > compressed * limits.max_compression_ratio
    ):
        raise PayloadTooLarge(
            f"The zip archive expands {declared / max(compressed, 1):.0f} times its compressed "
            f"size; this service accepts at most {limits.max_compression_ratio:g} "
            "(server.max_compression_ratio), to guard against zip bombs."
        )
    return entries


def _check_entry(info: zipfile.ZipInfo) -> _Entry:
    name = _entry_name(info)
    if info.flag_bits & 0x1:
        raise InvalidInput(
            "The zip archive has encrypted entries; this service cannot read them. Send an "
            "archive without a password."
        )
    problem = _name_problem(name)
    if problem:
        raise InvalidInput(f"The zip archive has an unsafe entry name: {problem}.")
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the archiver recorded no file type
    is_dir = name.endswith("/")
    if info.create_system == 3 and kind:
        if stat.S_ISLNK(kind):
            raise InvalidInput(
                "The zip archive holds a symbolic link; only regular files and folders are "
                "accepted. Re-create it without links (zip --symlinks is not wanted)."
            )
        if stat.S_ISDIR(kind):
            is_dir = True
        elif not stat.S_ISREG(kind):
            raise InvalidInput(
                "The zip archive holds a device, pipe or other special file; only regular "
                "files and folders are accepted."
            )
    return _Entry(info=info, path=PurePosixPath(name.rstrip("/")), is_dir=is_dir)


def _entry_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as its creator meant it.

    `orig_filename` keeps a NUL byte that zipfile would cut the name at. Without the UTF-8
    flag, zipfile reads names as cp437, but Info-ZIP's `zip` on Linux writes UTF-8 without
    setting the flag: bytes that are valid UTF-8 are taken as UTF-8, as 7-Zip does.
    """
    name = info.orig_filename
    if info.flag_bits & 0x800:
        return name
    raw = name.encode("cp437")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return name


def _name_problem(name: str) -> str:
    """Why `name` is unsafe, or "" when it is a plain relative path."""
    if "\x00" in name:
        return "it contains a NUL byte"
    if "\\" in name:
        return "it contains a backslash (make the archive with forward slashes)"
    if name.startswith("/"):
        return "it is an absolute path"
    if _DRIVE.match(name):
        return "it starts with a drive letter"
    if len(name.encode("utf-8", "surrogateescape")) > _MAX_PATH_BYTES:
        return f"it is longer than {_MAX_PATH_BYTES} bytes"
    parts = name[:-1].split("/") if name.endswith("/") else name.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            return f"it has a {part or 'empty'!r} path component"
        if len(part.encode("utf-8", "surrogateescape")) > _MAX_COMPONENT_BYTES:
            return f"a component is longer than {_MAX_COMPONENT_BYTES} bytes"
    return ""


def _refuse_duplicates_and_conflicts(entries: list[_Entry]) -> None:
    seen: dict[PurePosixPath, bool] = {}
    for entry in entries:
        if entry.path in seen and not (entry.is_dir and seen[entry.path]):
            raise InvalidInput("The zip archive has two entries with the same name.")
        seen[entry.path] = entry.is_dir
    for entry in entries:
        for parent in entry.path.parents:
            if seen.get(parent) is False:
                raise InvalidInput("The zip archive has a name that is both a file and a folder.")


def _refuse_overlaps(zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> None:
    """Entries that share or overlap their data are the mark of a non-recursive zip bomb."""
    ordered = sorted(infos, key=lambda i: i.header_offset)
    ends = [i.header_offset + _LOCAL_HEADER_BYTES + i.compress_size for i in ordered]
    starts = [i.header_offset for i in ordered] + [zf.start_dir]
    if any(end > start for end, start in zip(ends, starts[1:], strict=True)):
        raise InvalidInput("The zip archive has overlapping entries, as zip bombs do.")


def _write(
    zf: zipfile.ZipFile, entries: list[_Entry], destination: Path, limits: ExtractLimits
) -> int:
    written = 0
    files = 0
    for entry in entries:
        target = destination.joinpath(*entry.path.parts)
        if entry.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with zf.open(entry.info) as source, os.fdopen(fd, "wb") as sink:
            while chunk := source.read(_COPY_CHUNK):
                written += len(chunk)
                if written > limits.max_extracted_bytes:
                    raise _too_large_expanded(limits)
                sink.write(chunk)
        files += 1
    return files


def _too_large_expanded(limits: ExtractLimits) -> PayloadTooLarge:
    return PayloadTooLarge(
        "The zip archive expands to more than this service accepts "
        f"({limits.max_extracted_bytes} bytes, server.max_extracted_bytes)."
    )
