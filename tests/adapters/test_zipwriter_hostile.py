"""The output zip against a MAP that changes its output while it is zipped: whatever
happens, an archive that comes out whole reads back with every CRC right; otherwise the
stream stops with an OutputProblem (a cut body, never a whole-looking wrong one)."""

from __future__ import annotations

import io
import os
import random
import zipfile
from pathlib import Path

import pytest

from mis_adapters.storage.walk import OutputProblem
from mis_adapters.storage.zipwriter import zip_folder

MiB = 1024 * 1024


def test_a_file_rewritten_just_before_a_deflated_piece_is_an_output_problem(
    tmp_path: Path,
) -> None:
    """A piece of a large deflated file is primed with the 32 KiB before it, read again: if
    those bytes changed since the piece before was sent, its back-references unpack to other
    bytes than its CRC says. Periodic data (16 KiB) makes the deflater use them."""
    out = tmp_path / "out"
    out.mkdir()
    block = random.Random(3).randbytes(16 * 1024)
    (out / "volume.raw").write_bytes(block * 192)  # 3 MiB: three pieces
    chunks = zip_folder(out, 1, "deflate", workers=1)
    sent = [next(chunks), next(chunks)]  # its header, then its first piece
    with open(out / "volume.raw", "r+b") as volume:  # the same period, shifted by half
        volume.seek(MiB - 32 * 1024)
        volume.write((block[8192:] + block[:8192]) * 2)
    with pytest.raises(OutputProblem, match="changed while it was being sent"):
        sent += chunks
    body = b"".join(sent)
    assert b"PK\x05\x06" not in body  # no end record: the cut body cannot pass for whole


def whole_or_refused(folder: Path, policy: str, workers: int) -> dict[str, bytes] | None:
    try:
        body = b"".join(zip_folder(folder, 1, policy, workers=workers))
    except OutputProblem:
        return None
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        return {info.filename: zf.read(info) for info in zf.infolist()}
