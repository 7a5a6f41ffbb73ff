"""The output zip: links never followed (also while the tree changes), problems raised before
the first byte, and a valid zip for any count and size."""

from __future__ import annotations

import io
import os
import subprocess
import threading
import tracemalloc
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mis_adapters.zip import OutputLimits, OutputProblem, deflate, plan, writer, zip_folder
from tests.harness.unavailable import require_tool

SECRET = b"SECRET-host-file-content-" * 40
POLICIES = ["adaptive", "deflate", "stored"]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A folder of the host's files that no answer may contain."""
    folder = tmp_path / "host"
    (folder / "deeper").mkdir(parents=True)
    (folder / "passwd").write_bytes(SECRET)
    (folder / "deeper" / "key").write_bytes(SECRET)
    return folder


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "output"
    folder.mkdir()
    return folder


def zipped(folder: Path, policy: str = "adaptive") -> bytes:
    return b"".join(zip_folder(folder, 1, policy, workers=0, limits=OutputLimits(), spill_to=None))


def contents(body: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name) for name in zf.namelist()}


def test_links_at_any_level_are_left_out(out: Path, outside: Path) -> None:
    (out / "result.txt").write_text("ok")
    (out / "series").mkdir()
    (out / "series" / "mask.png").write_bytes(b"png")
    (out / "stolen").symlink_to(outside / "passwd")
    (out / "series" / "all-of-host").symlink_to(outside)
    (out / "dangling").symlink_to(out / "nowhere")
    body = zipped(out)
    assert SECRET[:20] not in body
    assert contents(body) == {"result.txt": b"ok", "series/mask.png": b"png"}


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda out, outside: (out.rmdir(), out.symlink_to(outside)), "is a symbolic link"),
        (lambda out, outside: (out.rmdir(), out.write_bytes(b"x")), "is a file"),
        (lambda out, outside: out.rmdir(), "is gone"),
    ],
)
def test_an_output_folder_that_is_not_a_folder_stops_before_the_first_byte(
    out: Path, outside: Path, make: object, problem: str
) -> None:
    make(out, outside)  # type: ignore[operator]
    chunks = zip_folder(out, 1, "adaptive", workers=0, limits=OutputLimits(), spill_to=None)
    with pytest.raises(OutputProblem, match=problem):
        next(chunks)


def test_a_folder_swapped_for_a_link_after_the_first_entries_yields_nothing_from_outside(
    out: Path, outside: Path
) -> None:
    (out / "a-first").mkdir()
    for n in range(50):
        (out / "a-first" / f"{n:03d}.bin").write_bytes(os.urandom(20_000))
    (out / "z-later").mkdir()
    (out / "z-later" / "mine.txt").write_text("the MAP's own")
    chunks = zip_folder(out, 1, "stored", workers=0, limits=OutputLimits(), spill_to=None)
    first = next(chunks)  # the scan is over and the zip has begun
    (out / "z-later" / "mine.txt").unlink()
    (out / "z-later").rmdir()
    (out / "z-later").symlink_to(outside)
    body = first + b"".join(chunks)
    assert SECRET[:20] not in body
    names = contents(body)
    assert len(names) == 50
    assert not any(name.startswith("z-later") for name in names)


def test_folders_swapped_for_links_all_the_while_never_leak(out: Path, outside: Path) -> None:
    """A thread flips a folder between a real one and a link to the host as fast as it can
    while the output is zipped again and again: whatever each zip holds, it is valid and
    holds nothing of the host."""
    (out / "sub").mkdir()
    (out / "sub" / "mine.txt").write_text("mine")
    (out / "sub" / "deeper").mkdir()
    (out / "sub" / "deeper" / "key").write_text("also mine")
    real, link = out / ".real", out / ".link"
    link.symlink_to(outside)
    stop = threading.Event()

    def flip() -> None:
        while not stop.is_set():
            os.rename(out / "sub", real)
            os.rename(link, out / "sub")  # now a link to the host
            os.rename(out / "sub", link)
            os.rename(real, out / "sub")

    flipper = threading.Thread(target=flip)
    flipper.start()
    seen: set[str] = set()
    try:
        for _ in range(200):
            try:
                body = zipped(out, "stored")
            except OutputProblem:
                continue  # caught mid-swap at the top: refused, which is fine too
            assert SECRET[:20] not in body
            seen.update(contents(body))
    finally:
        stop.set()
        flipper.join()
    assert not any("passwd" in name for name in seen)
    assert "sub/deeper/key" in seen or "sub/mine.txt" in seen  # the race was really run


def test_a_name_that_is_not_utf8_stops_before_the_first_byte(out: Path) -> None:
    (out / "fine.txt").write_text("ok")
    with open(os.path.join(os.fsencode(out), b"scan-\xff\xfe.dcm"), "wb") as bad:
        bad.write(b"x")
    chunks = zip_folder(out, 1, "adaptive", workers=0, limits=OutputLimits(), spill_to=None)
    with pytest.raises(OutputProblem, match="not valid UTF-8"):
        next(chunks)


def test_a_pipe_in_the_output_is_left_out_without_blocking(out: Path) -> None:
    os.mkfifo(out / "pipe")
    (out / "result.txt").write_text("ok")
    assert contents(zipped(out)) == {"result.txt": b"ok"}


def test_modification_times_outside_what_zip_holds_still_give_a_valid_zip(out: Path) -> None:
    for name, when in [("old", 0), ("future", 2**33), ("negative", -(10**9))]:
        (out / name).write_text(name)
        os.utime(out / name, (when, when))
    assert contents(zipped(out)) == {"old": b"old", "future": b"future", "negative": b"negative"}


def test_folders_nested_deeper_than_the_limit_stop_before_the_first_byte(out: Path) -> None:
    deep = out
    for _ in range(130):
        deep = deep / "d"
    deep.mkdir(parents=True)
    with pytest.raises(OutputProblem, match="nested more than 128 deep"):
        next(zip_folder(out, 1, "adaptive", workers=0, limits=OutputLimits(), spill_to=None))


@pytest.fixture(scope="module")
def many_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    (folder / "series").mkdir()
    for n in range(65_600):
        (folder / "series" / f"{n:05d}").write_bytes(b"%d" % n)
    return folder


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("policy", POLICIES)
def test_more_than_65535_files_give_a_valid_zip64_archive(
    many_files: Path, tmp_path: Path, policy: str
) -> None:
    unzip = require_tool("unzip")
    archive = tmp_path / "out.zip"
    archive.write_bytes(zipped(many_files, policy))
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        assert len(infos) == 65_600
        assert zf.read("series/65599") == b"65599"
        assert zf.testzip() is None
    subprocess.run([unzip, "-tq", str(archive)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def many_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50,000 tiny files in 250 folders: many entries, no folder wide."""
    folder = tmp_path_factory.mktemp("folders")
    for series in range(250):
        (folder / f"s{series:03d}").mkdir()
        for n in range(200):
            (folder / f"s{series:03d}" / f"{n:03d}").write_bytes(b"%d" % n)
    return folder


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("workers", [1, 2])
def test_memory_for_many_files_is_little_more_than_their_central_directory(
    many_folders: Path, workers: int
) -> None:
    """The central directory must be held until the end; nothing else may grow with the
    count. Peak Python memory while packing 50,000 tiny files, beyond the directory's own
    size (the zip's end record says it), is what any zip costs: a few chunks of 1 MiB in
    flight. Held as separate records, or joined into one copy at the end, the directory
    costs three times itself or more."""
    tracemalloc.start()
    try:
        for chunk in zip_folder(
            many_folders, 1, "deflate", workers=workers, limits=OutputLimits(), spill_to=None
        ):
            last = chunk
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    directory = int.from_bytes(last[-22:][12:16], "little")  # the end record's size field
    assert 50_250 * 46 < directory < 50_250 * 200  # 46 fixed bytes, a name, a time
    assert peak - directory < 6 * writer.CHUNK, (peak, directory)


def sparse_sink(chunks: Iterator[bytes], path: Path) -> int:
    """Write a stream that is mostly zeros as a sparse file; its size."""
    size = 0
    with open(path, "wb") as sink:
        for chunk in chunks:
            if chunk.count(0) == len(chunk):
                sink.seek(len(chunk), os.SEEK_CUR)
            else:
                sink.write(chunk)
            size += len(chunk)
        sink.truncate(size)
    return size


def sparse_file(path: Path, size: int, middle: bytes = b"") -> None:
    with open(path, "wb") as handle:
        handle.truncate(size)
        if middle:
            handle.seek(size // 2)
            handle.write(middle)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("policy", POLICIES)
def test_more_than_4_gib_gives_a_valid_zip64_archive(tmp_path: Path, policy: str) -> None:
    """Entries that start past 4 GiB and a file over 4 GiB, for every compression policy
    (sparse files: the disk holds almost nothing). The middles are random, so "adaptive"
    stores the two large files and the archive itself passes 4 GiB."""
    unzip = require_tool("unzip")
    out = tmp_path / "out"
    out.mkdir()
    noise = os.urandom(64 * 1024)
    sparse_file(out / "a-part1.raw", 2_200_000_000, noise)
    sparse_file(out / "b-part2.raw", 2_200_000_000, noise)
    sparse_file(out / "c-volume.raw", 4_300_000_000)
    (out / "d-summary.json").write_text('{"done": true}')
    archive = tmp_path / "out.zip"
    size = sparse_sink(
        zip_folder(out, 1, policy, workers=0, limits=OutputLimits(), spill_to=None), archive
    )
    if policy != "deflate":
        assert size > 0xFFFFFFFF  # stored entries carried the offsets past 4 GiB
    with zipfile.ZipFile(archive) as zf:
        assert [(i.filename, i.file_size) for i in zf.infolist()] == [
            ("a-part1.raw", 2_200_000_000),
            ("b-part2.raw", 2_200_000_000),
            ("c-volume.raw", 4_300_000_000),
            ("d-summary.json", 14),
        ]
        assert zf.read("d-summary.json") == b'{"done": true}'
    subprocess.run([unzip, "-tq", str(archive)], check=True, capture_output=True)


def test_zip64_is_chosen_by_the_running_bound_and_the_entry_count() -> None:
    """The rule itself, at its edges: a plain entry's 32-bit fields cannot hold an offset
    past 4 GiB, nor its end record a 65,536th entry, so the writer must switch first."""
    assert not plan.needs_zip64(0xFFFF, 0xFFFFFFFF)
    assert plan.needs_zip64(0x10000, 100)
    assert plan.needs_zip64(1, 0x100000000)
    assert plan.deflate_bound(4_000_000_000) > 4_000_000_000 * 1.0003 + 64


@pytest.mark.parametrize("level", [1, 5, 9])
def test_deflated_data_never_passes_the_bound_the_zip64_choice_counts_on(level: int) -> None:
    """Noise deflates to more than it was; the writer counts on `_deflate_bound` for whether
    an archive could pass 4 GiB, so what ISA-L makes of it, whole or in flushed pieces, at
    every level, must stay within it."""
    for size in (0, 1, 100, 4096, 65_536, 1 << 20):
        noise = os.urandom(size)
        assert len(deflate.compress(noise, level)) <= plan.deflate_bound(size)
        for flush in (deflate.SYNC_FLUSH, deflate.FINISH):
            compressor = deflate.compressor(level, os.urandom(32 * 1024))
            piece = compressor.compress(noise) + compressor.flush(flush)
            assert len(piece) <= plan.deflate_bound(size)
