"""The output zip deflated on several threads: read back exactly by Python's zipfile and by
unzip, the same archive for any number of workers, memory held to its window, and nothing
left running or open once it is closed."""

from __future__ import annotations

import io
import os
import random
import subprocess
import threading
import zipfile
import zlib
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mis_adapters import cpus
from mis_adapters.zip import OutputLimits, OutputProblem, deflate, pipeline, plan, zip_folder
from mis_adapters.zip.records import crc32_combine
from tests.harness.unavailable import require_tool

MiB = 1024 * 1024
POLICIES = ["adaptive", "deflate", "stored"]
DESCRIPTOR = 0x08


def _ramp(size: int) -> bytes:
    """16-bit values rising slowly, with a little noise: compressible, not trivially."""
    noise = random.Random(0).randbytes(size // 2)
    values = [1000 + (i % 512) * 2 + (noise[i] & 7) for i in range(size // 2)]
    return b"".join(value.to_bytes(2, "little") for value in values)


RAMP = _ramp(256 * 1024)


def smooth(size: int, seed: int = 0) -> bytes:
    start = random.Random(seed).randrange(len(RAMP) // 2) & ~1
    return (RAMP * (size // len(RAMP) + 2))[start : start + size]


def verified(body: bytes, folder: Path, tmp_path: Path) -> zipfile.ZipFile:
    """`body` read back: every file of `folder` byte for byte, every empty folder, nothing
    else; and unzip's own test passes."""
    archive = tmp_path / f"check-{len(list(tmp_path.iterdir()))}.zip"
    archive.write_bytes(body)
    subprocess.run([require_tool("unzip"), "-tq", str(archive)], check=True, capture_output=True)
    zf = zipfile.ZipFile(io.BytesIO(body))
    assert zf.testzip() is None
    expected = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.is_file():
            expected[name] = path.read_bytes()
        elif not any(path.iterdir()):
            expected[name + "/"] = b""
    assert {info.filename: zf.read(info) for info in zf.infolist()} == expected
    return zf


def zipped(folder: Path, policy: str = "deflate", workers: int = 4) -> bytes:
    return b"".join(
        zip_folder(folder, 1, policy, workers=workers, limits=OutputLimits(), spill_to=None)
    )


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small files of many sizes (batched), empty files and folders, and files in pieces:
    compressible and random, one of an exact number of pieces, one just over a piece."""
    folder = tmp_path_factory.mktemp("mixed")
    rng = random.Random(7)
    text = b"(0020,0013) InstanceNumber and some repeated header text\n" * 200
    for n in range(500):
        size = rng.choice([0, 1, 100, 4096, 9000, 70_000, 200_000])
        body = text[: size // 2] + rng.randbytes(size - size // 2)
        path = folder / f"series-{n % 7}" / f"IM{n:04d}.dcm"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(body)
    (folder / "empty-folder").mkdir()
    (folder / "deep" / "er" / "still-empty").mkdir(parents=True)
    (folder / "deep" / "zero").write_bytes(b"")
    (folder / "big" / "volume.raw").parent.mkdir()
    (folder / "big" / "volume.raw").write_bytes(smooth(5 * MiB + 12_345))
    (folder / "big" / "noise.raw").write_bytes(os.urandom(3 * MiB))
    (folder / "big" / "just-over.raw").write_bytes(smooth(MiB + 1, seed=1))
    (folder / "big" / "z-one-piece.raw").write_bytes(smooth(MiB, seed=2))
    return folder


@pytest.mark.parametrize("policy", POLICIES)
def test_one_worker_and_four_give_the_same_archive_read_back_exactly(
    mixed: Path, tmp_path: Path, policy: str
) -> None:
    serial, parallel = zipped(mixed, policy, workers=1), zipped(mixed, policy, workers=4)
    assert serial == parallel
    zf = verified(parallel, mixed, tmp_path)
    big = zf.getinfo("big/volume.raw")
    if policy == "stored":
        assert big.compress_type == zipfile.ZIP_STORED
        assert not big.flag_bits & DESCRIPTOR  # its CRC was in its header
    else:
        assert big.compress_type == zipfile.ZIP_DEFLATED
        assert big.flag_bits & DESCRIPTOR  # sent in pieces, its sizes after its data
        assert big.compress_size < big.file_size * 0.7
    noise = zf.getinfo("big/noise.raw").compress_type
    assert noise == (zipfile.ZIP_DEFLATED if policy == "deflate" else zipfile.ZIP_STORED)
    small = zf.getinfo("series-0/IM0007.dcm")
    assert not small.flag_bits & DESCRIPTOR  # batched: sizes in its header


@pytest.mark.parametrize("level", [0, 9])
def test_any_deflate_level_gives_a_valid_archive(tmp_path: Path, level: int) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a-report.txt").write_bytes(b"slice 1 of 400\n" * 300)
    (out / "volume.raw").write_bytes(smooth(2 * MiB + 5))
    chunks = zip_folder(out, level, "deflate", workers=2, limits=OutputLimits(), spill_to=None)
    verified(b"".join(chunks), out, tmp_path)


def test_pieces_lose_nothing_at_their_seams(tmp_path: Path) -> None:
    """Each piece is primed with the 32 KiB before it, so the pieced stream is about as
    small as deflating the file whole."""
    data = smooth(4 * MiB + 999)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "volume.raw").write_bytes(data)
    with zipfile.ZipFile(io.BytesIO(zipped(tmp_path / "out"))) as zf:
        info = zf.getinfo("volume.raw")
        assert zf.read(info) == data
    whole = len(deflate.compress(data, 1))  # the same deflate, on the whole file at once
    assert info.compress_size < whole * 1.002 + 64


def test_the_first_entry_goes_out_alone_before_its_data_is_deflated(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a-report.json").write_bytes(b'{"slices": 400}' * 1000)
    (out / "b-mask.raw").write_bytes(smooth(200_000))
    chunks = zip_folder(out, 1, "deflate", workers=4, limits=OutputLimits(), spill_to=None)
    first = next(chunks)
    # its local header alone: 30 bytes, the name, the extended timestamp (9)
    assert first[:4] == b"PK\x03\x04"
    assert len(first) == 30 + len("a-report.json") + 9
    verified(first + b"".join(chunks), out, tmp_path)


def test_modes_and_clamped_times(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "empty").mkdir(parents=True)
    (out / "old").write_bytes(b"x" * 5000)
    (out / "script.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(out / "script.sh", 0o700)
    os.utime(out / "old", (0, 0))
    with zipfile.ZipFile(io.BytesIO(zipped(out))) as zf:
        assert zf.getinfo("old").external_attr >> 16 == 0o100644
        assert zf.getinfo("script.sh").external_attr >> 16 == 0o100644
        assert zf.getinfo("empty/").external_attr >> 16 == 0o40755
        assert zf.getinfo("old").date_time == (1980, 1, 1, 0, 0, 0)


def test_zip64_records_from_the_entry_where_the_rule_says(
    mixed: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule moved down to the 6th entry, so every zip64 record is written and read
    back (pieces, batches, folders, the zip64 end records) without 65,536 files."""
    monkeypatch.setattr(plan, "ZIP32_MAX_ENTRIES", 5)
    body = zipped(mixed, "adaptive")
    zf = verified(body, mixed, tmp_path)
    versions = [info.extract_version for info in zf.infolist()]
    assert versions[:5] == [20] * 5
    assert set(versions[5:]) == {45}
    assert b"PK\x06\x06" in body[-200:]  # the zip64 end of central directory record


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_more_than_65535_empty_files_give_a_valid_zip64_archive(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for n in range(65_540):
        os.close(os.open(out / f"{n:05d}", os.O_CREAT | os.O_WRONLY, 0o644))
    zf = verified(zipped(out, "adaptive"), out, tmp_path)
    infos = zf.infolist()
    assert len(infos) == 65_540
    assert infos[65_534].extract_version == 20
    assert infos[65_535].extract_version == 45


# --- memory, stopping, and files that change ----------------------------------------------


class RecordingWindow(pipeline.Window):
    """The window, noting when the walk had to wait for room."""

    made: ClassVar[list[RecordingWindow]] = []

    def __init__(self, limit: int) -> None:
        super().__init__(limit)
        self.full = threading.Event()
        RecordingWindow.made.append(self)

    def reserve(self, cost: int) -> bool:
        if self.held and self.held + cost > self.limit:
            self.full.set()
        return super().reserve(cost)


@pytest.fixture
def window(monkeypatch: pytest.MonkeyPatch) -> type[RecordingWindow]:
    RecordingWindow.made = []
    monkeypatch.setattr(pipeline, "Window", RecordingWindow)
    return RecordingWindow


@pytest.fixture(scope="module")
def large(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 MiB: many times the window of two workers (6 MiB)."""
    folder = tmp_path_factory.mktemp("large")
    block = smooth(MiB)
    for n in range(4):
        (folder / f"part-{n}.raw").write_bytes(block * 10)
    for n in range(40):
        (folder / "slices" / f"{n:03d}.raw").parent.mkdir(exist_ok=True)
        (folder / "slices" / f"{n:03d}.raw").write_bytes(block[n * 1000 :][:200_000])
    return folder


def test_the_walk_waits_for_the_sender_within_its_window(
    large: Path, window: type[RecordingWindow]
) -> None:
    chunks = zip_folder(large, 1, "deflate", workers=2, limits=OutputLimits(), spill_to=None)
    body = [next(chunks)]
    assert window.made == [], "the threads started before the first bytes were out"
    body.append(next(chunks))
    (held,) = window.made
    assert held.full.wait(60), "the walk ran ahead without bound"
    assert held.held <= held.limit == 2 * 3 * MiB
    body += chunks
    assert held.peak <= held.limit
    assert len(b"".join(body)) > 4 * held.limit  # so an unbounded walk would have passed it


def open_descriptors() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def packing_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("mis-pack")]


@pytest.mark.parametrize("pulled", [0, 1, 2, 5, 30])
def test_closing_midway_stops_every_thread_and_closes_every_file(large: Path, pulled: int) -> None:
    """As when the client goes away: the generator is closed after `pulled` chunks (the
    first is made on the caller's thread; the threads start for the second)."""
    before = open_descriptors()
    chunks = zip_folder(large, 1, "deflate", workers=4, limits=OutputLimits(), spill_to=None)
    for _ in range(pulled):
        next(chunks)
    if pulled:
        assert open_descriptors() > before  # the first file, being sent
    if pulled > 1:
        assert packing_threads()  # the walk and workers really were running
    chunks.close()
    assert packing_threads() == []
    assert open_descriptors() == before


@pytest.mark.parametrize("workers", [1, 2])
def test_a_file_cut_short_midway_stops_every_thread_and_closes_every_file(
    tmp_path: Path, workers: int
) -> None:
    """A large file cut short once sending began: the error comes in its place, and nothing
    is left running or open (the window kept its later pieces from being read early)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "a-volume.raw").write_bytes(smooth(MiB) * 30)
    (out / "b-summary.json").write_text("{}")
    before = open_descriptors()
    chunks = zip_folder(out, 1, "deflate", workers=workers, limits=OutputLimits(), spill_to=None)
    sent = [next(chunks)]  # the volume's header: it is open, its size known
    os.truncate(out / "a-volume.raw", MiB)
    with pytest.raises(OutputProblem, match="shrank while it was being sent"):
        sent += chunks
    assert packing_threads() == []
    assert open_descriptors() == before


def test_a_stored_file_that_changes_after_its_checksum_is_an_output_problem(
    tmp_path: Path,
) -> None:
    """A stored entry's CRC goes in its header, before its data: data that then changes
    would make a corrupt entry, so it is refused instead."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "noise.raw").write_bytes(os.urandom(3 * MiB))
    chunks = zip_folder(out, 1, "stored", workers=1, limits=OutputLimits(), spill_to=None)
    header = next(chunks)  # its CRC is known: the file was read once
    assert header.startswith(b"PK\x03\x04")
    with open(out / "noise.raw", "r+b") as handle:
        handle.seek(2 * MiB)
        handle.write(b"changed")
    with pytest.raises(OutputProblem, match="changed while it was being sent"):
        b"".join(chunks)


# --- the pieces' checksums and the worker count -------------------------------------------


@given(st.binary(max_size=3000), st.binary(max_size=3000))
def test_crc32_combine_is_the_crc_of_the_joined_bytes(first: bytes, second: bytes) -> None:
    combined = crc32_combine(zlib.crc32(first), zlib.crc32(second), len(second))
    assert combined == zlib.crc32(first + second)


def test_crc32_combine_over_long_pieces() -> None:
    pieces = [os.urandom(n) for n in (MiB, MiB, 12_345, 0, 7)]
    crc = 0
    for piece in pieces:
        crc = crc32_combine(crc, zlib.crc32(piece), len(piece))
    assert crc == zlib.crc32(b"".join(pieces))


def test_auto_is_the_cpus_mis_may_use_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cpus.worker_count(3) == 3
    assert cpus.worker_count(1) == 1
    monkeypatch.setattr(cpus, "available_cpus", lambda: 64)
    assert cpus.worker_count(0) == cpus.AUTO_CAP
    monkeypatch.setattr(cpus, "available_cpus", lambda: 2)
    assert cpus.worker_count(0) == 2


def test_one_worker_starts_no_thread(mixed: Path) -> None:
    chunks = zip_folder(mixed, 1, "deflate", workers=1, limits=OutputLimits(), spill_to=None)
    next(chunks)
    assert packing_threads() == []
    chunks.close()
