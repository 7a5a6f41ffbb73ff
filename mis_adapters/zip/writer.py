"""The output zip, streamed: built lazily, in order, as the caller pulls it.

Used for the MAP's output folder and by `mis infer` to send a folder. The folder is walked
with descriptors (walk.py): a link, at any level and at any moment, contributes nothing.
Before the first byte the whole tree is scanned once (budget.py), so what would stop the zip
halfway (a file that cannot be read, a name that is not UTF-8 or that the reader would
refuse) or what is past the limits is an `OutputProblem` raised while the caller can still
answer with an error instead of a cut body.

The zip is whole for any size and count: an entry takes the zip64 form as soon as the archive
could pass 4 GiB by its end, or from the 65,536th entry; below that, the plain form, which
every unzip reads. The work is split in three:

- the plan (plan.py) walks the tree again and turns it into steps (steps.py), in archive
  order: small files read and handed over in batches (about 256 KiB or 64 files) whose local
  headers carry sizes and CRC up front; a file over 1 MiB in pieces of 1 MiB, each deflated
  on its own, primed with the 32 KiB before it (deflate's window, so nothing is lost at the
  seams) and ended with a sync flush, so the pieces join into one deflate stream whose CRC is
  combined from theirs; sizes and CRC then follow in a data descriptor. A stored file over
  1 MiB is checksummed in pieces first, since a stored entry's header carries its CRC;
- the pipeline (pipeline.py) runs the steps' work, on a pool of `workers` threads with the
  walk on one of its own, within a window of bytes in flight;
- the assembler (assembler.py) sends the results in order, so the zip is the same for any
  number of workers, and keeps the central directory (in a file past a few MiB), sent last.

The very first entry goes out at once: a deflated one as a streamed entry (its header first),
anything else alone, so the response starts as soon as the output was scanned.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable, Iterator
from pathlib import Path
from typing import Literal

from mis_adapters.cpus import worker_count
from mis_adapters.zip.assembler import Assembler
from mis_adapters.zip.budget import OutputLimits, scan
from mis_adapters.zip.pipeline import run_steps
from mis_adapters.zip.plan import plan
from mis_adapters.zip.steps import Files
from mis_adapters.zip.walk import open_top

CHUNK = 1024 * 1024  # what the caller gets at most at a time
# How the output is compressed; the settings take their choices from this one type.
Compression = Literal["adaptive", "deflate", "stored"]


def zip_folder(
    folder: Path,
    level: int,
    compression: Compression,
    workers: int,
    limits: OutputLimits,
    spill_to: Path | None,
) -> Generator[bytes, None, None]:
    """Zip bytes of `folder` in chunks of up to 1 MiB, built lazily as the caller pulls them.

    `compression`: "deflate" every file at `level`; "stored" (no compression); "adaptive"
    deflates only files whose middle compresses, since deflating already-compressed pixels
    costs much and saves nothing. `workers`: threads deflating (server.workers: 0 is auto,
    1 none besides the caller's). `limits`: what the zip may hold (`OutputLimits()`: no
    bounds). `spill_to`: the folder where a large central directory waits (None: the
    temporary folder). The caller states each: the settings hold their defaults.

    Raises OutputProblem (UnsafeName, OutputOverLimit, OutputTooLarge among them) before the
    first chunk when it can be known then. Closing it stops the threads and closes every
    file.
    """
    top = open_top(folder)
    files = Files()
    try:
        scan(top, limits)
        steps = run_steps(plan(top, level, compression, files, limits), worker_count(workers))
        parts = Assembler(files, spill_to).parts(steps)
        try:
            yield from _rechunk(parts)
        finally:
            parts.close()
            steps.close()
    finally:
        files.close_all()
        os.close(top)


def _rechunk(parts: Iterable[bytes]) -> Iterator[bytes]:
    """Merge small parts, and cut large ones, so each hop between the worker thread and the
    event loop moves up to 1 MiB; the first parts go out small, so the response starts as
    soon as the MAP is done: the very first (the first entry, or a large one's header) at
    once."""
    buffer = bytearray()
    threshold = 1
    for part in parts:
        if not buffer and threshold <= len(part) <= CHUNK:
            yield part
            threshold = min(max(threshold * 4, 16 * 1024), CHUNK)
            continue
        buffer += part
        while len(buffer) >= threshold:
            size = min(len(buffer), CHUNK)
            with memoryview(buffer) as view:  # one copy, not a slice and then its copy
                chunk = bytes(view[:size])
            del buffer[:size]
            yield chunk
            threshold = min(max(threshold * 4, 16 * 1024), CHUNK)
    if buffer:
        yield bytes(buffer)
