"""Unpacking an upload with the zip package's reader: its refusals become MIS's errors here,
once (a bad archive 400, one over the limits 413, a full payload volume 507), and the input's
modes (layout.py, the payload volume's policy) are handed to it here."""

from __future__ import annotations

import errno
from pathlib import Path

from mis_adapters.storage.layout import INPUT_FILE_MODE, INPUT_FOLDER_MODE
from mis_adapters.zip import ArchiveTooLarge, BadArchive, ExtractLimits, Modes
from mis_adapters.zip import extract_archive as unpack_checked
from mis_core.errors import InsufficientStorage, InvalidInput, PayloadTooLarge

__all__ = [
    "ExtractLimits",
    "extract_archive",
    "is_disk_full",
    "storage_full_error",
]

_FULL = (errno.ENOSPC, errno.EDQUOT)
INPUT_MODES = Modes(file=INPUT_FILE_MODE, folder=INPUT_FOLDER_MODE)


def extract_archive(archive: Path, destination: Path, limits: ExtractLimits, workers: int) -> int:
    """Unpack `archive` into the existing, empty folder `destination`, with the input's modes
    (layout.py); the file count. `workers`: threads writing entries (server.workers: 0 is
    auto)."""
    try:
        return unpack_checked(archive, destination, limits, INPUT_MODES, workers)
    except BadArchive as exc:
        raise InvalidInput(exc.message) from exc
    except ArchiveTooLarge as exc:
        raise PayloadTooLarge(exc.message) from exc
    except OSError as exc:
        if is_disk_full(exc):
            raise storage_full_error() from exc
        raise


def storage_full_error() -> InsufficientStorage:
    return InsufficientStorage(
        "The payload volume ran out of space while handling this request; nothing of it was "
        "kept. Try a smaller input, or ask the administrator to give the payload volume more "
        "space."
    )


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in _FULL
