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

from mis_adapters.storage import zipwriter
from mis_adapters.storage.walk import OutputProblem, OutputTooLarge, Scan
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


@pytest.mark.parametrize("workers", [1, 2])
def test_files_grown_after_the_scan_still_stop_at_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """The scan checks the bound, then the zip walks again: a MAP still running in between
    makes a file of 64 KiB a sparse 256 MiB one (it could as well be a terabyte). The zip
    must stop at the bound, not send it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a-first.txt").write_text("ok")
    (out / "b-volume.raw").write_bytes(b"\1" * 65536)
    real_scan = zipwriter.scan

    def scan_then_grow(top: int, max_bytes: int = 0) -> Scan:
        found = real_scan(top, max_bytes)
        os.truncate(out / "b-volume.raw", 256 * MiB)  # what the MAP does meanwhile
        return found

    monkeypatch.setattr(zipwriter, "scan", scan_then_grow)
    chunks = zip_folder(out, 1, "stored", max_bytes=MiB, workers=workers)
    with pytest.raises(OutputTooLarge, match="more than 1048576 bytes"):
        for _ in chunks:
            pass


def whole_or_refused(folder: Path, policy: str, workers: int) -> dict[str, bytes] | None:
    try:
        body = b"".join(zip_folder(folder, 1, policy, workers=workers))
    except OutputProblem:
        return None
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        return {info.filename: zf.read(info) for info in zf.infolist()}
