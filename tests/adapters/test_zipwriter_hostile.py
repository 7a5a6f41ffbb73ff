"""The output zip against a MAP that changes its output while it is zipped: whatever
happens, an archive that comes out whole reads back with every CRC right; otherwise the
stream stops with an OutputProblem (a cut body, never a whole-looking wrong one)."""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest

from mis_adapters.zip import OutputLimits, OutputProblem, OutputTooLarge, writer, zip_folder
from mis_adapters.zip.budget import Scan
from tests.harness.unavailable import require_tool

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
    chunks = zip_folder(out, 1, "deflate", workers=1, limits=OutputLimits(), spill_to=None)
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
    real_scan = writer.scan

    def scan_then_grow(top: int, limits: OutputLimits) -> Scan:
        found = real_scan(top, limits)
        os.truncate(out / "b-volume.raw", 256 * MiB)  # what the MAP does meanwhile
        return found

    monkeypatch.setattr(writer, "scan", scan_then_grow)
    chunks = zip_folder(
        out, 1, "stored", workers=workers, limits=OutputLimits(max_bytes=MiB), spill_to=None
    )
    with pytest.raises(OutputTooLarge, match="more than 1048576 bytes"):
        for _ in chunks:
            pass


def whole_or_refused(folder: Path, policy: str, workers: int) -> dict[str, bytes] | None:
    try:
        body = b"".join(
            zip_folder(folder, 1, policy, workers=workers, limits=OutputLimits(), spill_to=None)
        )
    except OutputProblem:
        return None
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        return {info.filename: zf.read(info) for info in zf.infolist()}


def test_files_rewritten_grown_cut_and_replaced_all_the_while_give_whole_zips_or_refusals(
    tmp_path: Path,
) -> None:
    """A thread keeps rewriting large files (the same period shifted, so deflate's
    back-references would notice), appending, truncating, and renaming new files over
    them, while the folder is zipped again and again under every policy and worker count."""
    out = tmp_path / "out"
    out.mkdir()
    block = random.Random(3).randbytes(16 * 1024)
    shifted = (block[8192:] + block[:8192]) * 2
    for n in range(3):
        (out / f"big{n}.raw").write_bytes(block * (192 + n))
    for n in range(10):
        (out / f"small{n}").write_bytes(block[: n * 1500])
    stop = threading.Event()

    def meddle() -> None:
        rng = random.Random(5)
        while not stop.is_set():
            target = out / f"big{rng.randrange(3)}.raw"
            action = rng.randrange(4)
            with open(target, "r+b") as handle:
                if action == 0:
                    handle.seek(rng.randrange(3 * MiB))
                    handle.write(shifted)
                elif action == 1:
                    handle.seek(0, os.SEEK_END)
                    handle.write(block)
                elif action == 2:
                    handle.truncate(rng.randrange(4 * MiB))
            if action == 3:
                (out / ".new").write_bytes(block * rng.randrange(300))
                os.rename(out / ".new", target)
            time.sleep(0.0005)

    meddler = threading.Thread(target=meddle)
    meddler.start()
    outcomes = {"whole": 0, "refused": 0}
    try:
        for n in range(12):
            for policy in ("deflate", "stored", "adaptive"):
                got = whole_or_refused(out, policy, workers=1 + n % 3)
                outcomes["whole" if got is not None else "refused"] += 1
    finally:
        stop.set()
        meddler.join()
    assert outcomes["whole"] + outcomes["refused"] == 36


SIZES = [0, 1, 32 * 1024, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, MiB - 1, MiB, MiB + 1]


@pytest.mark.parametrize(("policy", "level"), [("deflate", 0), ("deflate", 9), ("stored", 1)])
def test_boundary_sizes_and_odd_names_read_back_by_every_reader(
    tmp_path: Path, policy: str, level: int
) -> None:
    """Sizes at the 64 KiB (stored block) and 1 MiB (piece) edges, UTF-8 names, a name of
    255 bytes 40 folders deep and empty folders, read back byte for byte by zipfile, unzip
    and, where installed, libarchive's bsdtar."""
    out = tmp_path / "out"
    deep = out.joinpath(*[f"d{n:02d}" for n in range(40)])
    deep.mkdir(parents=True)
    (deep / ("n" * 255)).write_bytes(b"deep")
    (out / "Ünïcødé 名前 🙂").mkdir()
    (out / "Ünïcødé 名前 🙂" / "файл.txt").write_bytes("ß".encode() * 99)
    (out / "empty" / "nested").mkdir(parents=True)
    text = b"(0020,0013) InstanceNumber\n" * (MiB // 16)
    rng = random.Random(9)
    for n, size in enumerate(SIZES):
        (out / f"{n}-text-{size}").write_bytes(text[:size])
        (out / f"{n}-noise-{size}").write_bytes(rng.randbytes(size))
    expected = {}
    for path in sorted(out.rglob("*")):
        name = path.relative_to(out).as_posix()
        if path.is_file():
            expected[name] = path.read_bytes()
        elif not any(path.iterdir()):
            expected[name + "/"] = b""
    for workers in (1, 3):
        archive = tmp_path / f"out-{workers}.zip"
        chunks = zip_folder(out, level, policy, workers, limits=OutputLimits(), spill_to=None)
        archive.write_bytes(b"".join(chunks))
        with zipfile.ZipFile(archive) as zf:
            assert zf.testzip() is None
            assert {info.filename: zf.read(info) for info in zf.infolist()} == expected
        unzip = require_tool("unzip")
        subprocess.run([unzip, "-tq", str(archive)], check=True, capture_output=True)
        bsdtar = shutil.which("bsdtar")
        if bsdtar:
            listed = subprocess.run(
                [bsdtar, "-tf", str(archive)], check=True, capture_output=True, text=True
            ).stdout.splitlines()
            assert sorted(listed) == sorted(expected)
            every = subprocess.run([bsdtar, "-xOf", str(archive)], check=True, capture_output=True)
            assert every.stdout == b"".join(expected[name] for name in listed)
