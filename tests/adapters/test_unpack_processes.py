"""Unpacking on worker processes: the same tree as the threads, every worker gone at the end,
whether the archive is written, refused, or MIS dies halfway. (Every archive test also runs
this way: see `unpack_by` in conftest.py.)"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import attrs
import pytest

from mis_adapters.storage.archive import INPUT_MODES, ExtractLimits, extract_archive
from mis_adapters.zip import layout as zip_layout
from mis_adapters.zip import reader as checks
from mis_adapters.zip import unpack, unpack_processes
from mis_core.errors import InsufficientStorage, InvalidInput
from tests.harness.wait import wait_until

LIMITS = ExtractLimits(
    max_extracted_bytes=1 << 30, max_entries=100_000, max_compression_ratio=1000.0
)


def study(path: Path, files: int, folders: int, size: int = 300) -> dict[str, bytes]:
    """A zip of `files` files spread over `folders` folders (deflated and stored mixed)."""
    contents = {
        f"series-{n % folders:02d}/IM{n:05d}.dcm": (b"%05d" % n) * (size // 5) for n in range(files)
    }
    with zipfile.ZipFile(path, "w") as zf:
        for n, (name, data) in enumerate(contents.items()):
            zf.writestr(name, data, zipfile.ZIP_DEFLATED if n % 2 else zipfile.ZIP_STORED)
    return contents


def damage_first_entry(archive: Path) -> None:
    """Flip a byte of the first entry's stored data (not of its CRC)."""
    with zipfile.ZipFile(archive) as zf:
        info = zf.infolist()[0]
    assert info.compress_type == zipfile.ZIP_STORED
    data = bytearray(archive.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + 5] ^= 0xFF
    archive.write_bytes(bytes(data))


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.dcm")}


class Spawned:
    """The workers extract_archive starts, as they were started."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.workers: list[subprocess.Popen[bytes]] = []
        real = subprocess.Popen

        def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
            worker = real(*args, **kwargs)
            self.workers.append(worker)
            return worker

        monkeypatch.setattr(unpack_processes.subprocess, "Popen", popen)


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> Spawned:
    return Spawned(monkeypatch)


def test_many_entries_are_written_by_worker_processes_into_the_same_tree(
    tmp_path: Path, dest: Path, spawned: Spawned
) -> None:
    files = study(tmp_path / "in.zip", unpack_processes.PROCESSES_FROM + 500, folders=12)
    assert extract_archive(tmp_path / "in.zip", dest, LIMITS, workers=3) == len(files)
    assert tree(dest) == files
    assert len(spawned.workers) == 3
    assert all(worker.returncode == 0 for worker in spawned.workers)


def test_the_workers_read_the_archive_that_was_checked_not_what_its_path_names_now(
    tmp_path: Path, dest: Path
) -> None:
    checked = tmp_path / "in.zip"
    files = study(checked, unpack_processes.PROCESSES_FROM, folders=6)
    other = tmp_path / "other.zip"
    study(other, unpack_processes.PROCESSES_FROM, folders=6, size=600)
    with open(checked, "rb") as source:
        layout = zip_layout.read_layout(source)
        bounds = checks._plan(source, layout, LIMITS, checks._volume(dest)).bounds
        other.replace(checked)  # the path now names another archive
        written = unpack_processes.write_in_processes(
            source, layout, bounds, dest, INPUT_MODES, workers=2
        )
    assert written == len(files)
    assert tree(dest) == files


def test_few_entries_are_left_to_the_threads(tmp_path: Path, dest: Path, spawned: Spawned) -> None:
    study(tmp_path / "in.zip", 50, folders=5)
    assert extract_archive(tmp_path / "in.zip", dest, LIMITS, workers=3) == 50
    assert spawned.workers == []


def test_a_refusal_in_one_share_stops_every_worker(
    tmp_path: Path, dest: Path, spawned: Spawned
) -> None:
    archive = tmp_path / "in.zip"
    files = study(archive, 20_000, folders=4)
    damage_first_entry(archive)
    with pytest.raises(InvalidInput, match="does not match its checksum"):
        extract_archive(archive, dest, LIMITS, workers=2)
    assert len(spawned.workers) == 2
    assert all(worker.returncode is not None for worker in spawned.workers)  # all reaped
    # the other worker was stopped, not let finish its share
    failed = unpack_processes.shard_name("series-00", 2)
    others = [
        name for name in files if unpack_processes.shard_name(name.split("/")[0], 2) != failed
    ]
    assert len(others) >= 5000
    assert len(set(tree(dest)) & set(others)) < len(others)


def test_large_entries_are_written_here_meanwhile_and_a_refusal_there_stops_the_workers(
    tmp_path: Path, dest: Path, spawned: Spawned
) -> None:
    archive = tmp_path / "in.zip"
    files = study(archive, unpack_processes.PROCESSES_FROM, folders=6)
    large = os.urandom(unpack.PARALLEL_FROM * 3)
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("series-00/volume.raw", large)
    assert extract_archive(archive, dest, LIMITS, workers=2) == len(files) + 1
    assert (dest / "series-00" / "volume.raw").read_bytes() == large

    with zipfile.ZipFile(archive) as zf:  # now damage the large one's data
        info = zf.getinfo("series-00/volume.raw")
    data = bytearray(archive.read_bytes())
    data[info.header_offset + 30 + len(info.filename) + 1000] ^= 0xFF
    archive.write_bytes(bytes(data))
    again = tmp_path / "again"
    again.mkdir()
    with pytest.raises(InvalidInput, match="does not match its checksum"):
        extract_archive(archive, again, LIMITS, workers=2)
    assert len(spawned.workers) == 4
    assert all(worker.returncode is not None for worker in spawned.workers)


def test_a_refusal_leaves_no_pipe_of_a_worker_open(
    tmp_path: Path, dest: Path, spawned: Spawned
) -> None:
    """The workers killed after another failed said nothing: their pipes are closed all the
    same, not left to the garbage collector while the refusal is handled."""
    archive = tmp_path / "in.zip"
    study(archive, 20_000, folders=4)
    damage_first_entry(archive)  # its worker fails at once, the others are still writing
    with pytest.raises(InvalidInput, match="does not match its checksum"):
        extract_archive(archive, dest, LIMITS, workers=3)
    assert len(spawned.workers) == 3
    for worker in spawned.workers:
        assert worker.returncode is not None
        assert worker.stdout is not None
        assert worker.stdout.closed
        assert worker.stderr is not None
        assert worker.stderr.closed


def test_a_worker_that_cannot_be_started_leaves_none_of_the_others_running(
    tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starting the second worker fails (no process to be had: EAGAIN): the first one,
    waiting for its bounds, is killed and reaped, not left to wait."""
    started: list[subprocess.Popen[bytes]] = []
    real = subprocess.Popen

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        if started:
            raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))
        started.append(real(*args, **kwargs))
        return started[-1]

    monkeypatch.setattr(unpack_processes.subprocess, "Popen", popen)
    archive = tmp_path / "in.zip"
    study(archive, unpack_processes.PROCESSES_FROM, folders=4)
    with pytest.raises(BlockingIOError):
        extract_archive(archive, dest, LIMITS, workers=2)
    assert len(started) == 1
    assert started[0].returncode is not None  # reaped
    assert started[0].stdout is not None
    assert started[0].stdout.closed


def test_a_duplicate_name_is_refused_across_the_workers(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for n in range(unpack_processes.PROCESSES_FROM):
            zf.writestr(f"s{n % 9}/{n}", b"x")
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("s3/30", b"again")
    with pytest.raises(InvalidInput, match="same name"):
        extract_archive(archive, dest, LIMITS, workers=2)


def test_a_name_that_is_a_file_in_one_share_and_a_folder_in_another_is_refused(
    tmp_path: Path, dest: Path
) -> None:
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for n in range(unpack_processes.PROCESSES_FROM):
            zf.writestr(f"s{n % 9}/{n}", b"x")
        zf.writestr("s2/clash", b"a file")  # share of "s2"...
        zf.writestr("s2/clash/inside", b"a file in it")  # ...and of "s2/clash"
    assert unpack_processes.shard_name("s2", 2) != unpack_processes.shard_name("s2/clash", 2)
    with pytest.raises(InvalidInput, match=r"both a file and a folder|land on one path"):
        extract_archive(archive, dest, LIMITS, workers=2)


def test_a_full_volume_in_a_worker_is_insufficient_storage(
    tmp_path: Path, tiny_volume: Path
) -> None:
    archive = tmp_path / "in.zip"
    study(archive, unpack_processes.PROCESSES_FROM, folders=8, size=4000)  # 8 MB > 4 MiB
    target = tiny_volume / "input"
    target.mkdir()
    with pytest.raises(InsufficientStorage, match="ran out of space"):
        extract_archive(archive, target, LIMITS, workers=2)


def test_the_workers_die_with_mis(tmp_path: Path, dest: Path) -> None:
    """MIS killed while its workers write: none of them goes on writing."""
    archive = tmp_path / "in.zip"
    study(archive, 40_000, folders=40, size=50)
    script = (
        "import sys; from pathlib import Path; "
        "from mis_adapters.storage.archive import ExtractLimits, extract_archive; "
        "extract_archive(Path(sys.argv[1]), Path(sys.argv[2]), "
        "ExtractLimits(1 << 30, 100_000, 1000.0), workers=2)"
    )
    mis = subprocess.Popen([sys.executable, "-c", script, str(archive), str(dest)])
    workers = wait_for_workers(mis.pid, 2)
    wait_until(lambda: file_count(dest) >= 100, 30, "the workers to write")  # they are writing
    os.kill(mis.pid, signal.SIGKILL)
    mis.wait()
    wait_until(lambda: not any(alive(pid) for pid in workers), 60, "the workers to die")
    # gone because MIS went, not because they were done: left alone, they write all 40,000
    assert file_count(dest) < 40_000


def file_count(dest: Path) -> int:
    """How many files are under `dest`."""
    return sum(len(names) for _, _, names in os.walk(dest))


def test_the_workers_import_from_where_mis_does(tmp_path: Path, dest: Path) -> None:
    """MIS whose libraries come from PYTHONPATH (not from its interpreter's site-packages):
    its workers find them too, as its threads do."""
    bare = tmp_path / "bare"  # an interpreter with no libraries of its own
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(bare)], check=True, timeout=120)
    python = str(bare / "bin" / "python")
    archive = tmp_path / "in.zip"
    files = study(archive, unpack_processes.PROCESSES_FROM, folders=8)
    script = (
        "import sys; from pathlib import Path; "
        "from mis_adapters.storage.archive import ExtractLimits, extract_archive; "
        "print(extract_archive(Path(sys.argv[1]), Path(sys.argv[2]), "
        "ExtractLimits(1 << 30, 100_000, 1000.0), workers=2))"
    )
    libraries = str(Path(attrs.__file__).parents[1])
    repository = str(Path(__file__).parents[2])
    done = subprocess.run(
        [python, "-c", script, str(archive), str(dest)],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": os.pathsep.join([repository, libraries])},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(len(files))]
    assert tree(dest) == files


def wait_for_workers(parent: int, count: int) -> list[int]:
    children = Path(f"/proc/{parent}/task/{parent}/children")
    wait_until(lambda: len(children.read_text().split()) >= count, 30, "the workers to start")
    return [int(pid) for pid in children.read_text().split()]


def alive(pid: int) -> bool:
    """Running (a zombie waiting for init to reap it has stopped writing)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_the_workers_yield_to_the_server(tmp_path: Path, dest: Path) -> None:
    """They run at a lower priority than MIS from their start, so the event loop gets a core
    when they meet."""
    archive = tmp_path / "in.zip"
    study(archive, unpack_processes.PROCESSES_FROM, folders=4)
    with open(archive, "rb") as source:
        layout = zip_layout.read_layout(source)
        bounds = checks._plan(source, layout, LIMITS, checks._volume(dest)).bounds
        workers = [
            unpack_processes._start(source.fileno(), dest, INPUT_MODES, i, 2) for i in range(2)
        ]
        try:
            assert [niceness(w.pid) for w in workers] == [os.nice(0) + 10] * 2
            unpack_processes._send(workers, bounds.tobytes())
            unpack_processes._results(workers)
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


@pytest.mark.parametrize("files", [50, unpack_processes.PROCESSES_FROM], ids=["threads", "workers"])
def test_damaged_deflate_data_is_refused_alike_by_threads_and_workers(
    tmp_path: Path, dest: Path, files: int
) -> None:
    archive = tmp_path / "in.zip"
    study(archive, files, folders=4)
    with zipfile.ZipFile(archive) as zf:
        info = next(i for i in zf.infolist() if i.compress_type == zipfile.ZIP_DEFLATED)
    data = bytearray(archive.read_bytes())
    data[info.header_offset + 30 + len(info.filename)] = 0x07  # a block of type 3: invalid
    archive.write_bytes(bytes(data))
    with pytest.raises(InvalidInput, match="compressed data is damaged"):
        extract_archive(archive, dest, LIMITS, workers=2)
