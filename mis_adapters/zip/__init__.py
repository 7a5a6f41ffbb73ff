"""Zip archives, read and written with MIS's safety rules, and with no HTTP meaning.

The reader (`reader.py`, with `layout.py`, `index.py`, `unpack.py`, `folders.py` and
`unpack_processes.py`) unpacks an uploaded archive after checking it; the writer
(`writer.py`, with `walk.py`, `budget.py`, `plan.py`, `steps.py`, `pipeline.py`,
`assembler.py`, `directory.py` and `records.py`) streams a folder as a zip. Both hold names
to one rule (`names.py`) and share the format's numbers (`constants.py`). What goes wrong is
one of `errors.py`'s exceptions, which the storage adapter turns into MIS's errors.

What code outside the package may use is `__all__` below, imported from here; the modules
behind it are the package's own business (tests/adapters/test_zip_surface.py holds to it).
"""

from __future__ import annotations

from mis_adapters.zip.budget import OutputLimits
from mis_adapters.zip.errors import (
    ArchiveTooLarge,
    BadArchive,
    OutputOverLimit,
    OutputProblem,
    OutputTooLarge,
    UnsafeName,
)
from mis_adapters.zip.reader import ExtractLimits, Modes, extract_archive
from mis_adapters.zip.writer import Compression, zip_folder

__all__ = [
    "ArchiveTooLarge",
    "BadArchive",
    "Compression",
    "ExtractLimits",
    "Modes",
    "OutputLimits",
    "OutputOverLimit",
    "OutputProblem",
    "OutputTooLarge",
    "UnsafeName",
    "extract_archive",
    "zip_folder",
]
