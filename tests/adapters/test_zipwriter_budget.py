"""The output zip's budget and names: limits on entries, a path's length and the central
directory stop the zip before its first byte; a name the reader refuses is never written,
by the same rule; a large central directory waits in a private file, not in memory."""

from __future__ import annotations

import errno
import io
import os
import re
import stat
import zipfile
from pathlib import Path

import pytest

from mis_adapters.storage.archive import extract_archive
from mis_adapters.zip import (
    OutputLimits,
    OutputOverLimit,
    OutputProblem,
    UnsafeName,
    directory,
    zip_folder,
)
from mis_adapters.zip.records import CENTRAL_MOST
from mis_core.errors import InvalidInput
from tests.zips import ROOMY_LIMITS, make_zip


@pytest.fixture
def out(tmp_path: Path) -> Path:
    folder = tmp_path / "output"
    folder.mkdir()
    return folder


@pytest.mark.parametrize(
    ("name", "shown", "why"),
    [
        ("..\\..\\evil.txt", r"'..\\..\\evil.txt'", "backslash"),
        ("C:evil.txt", "'C:evil.txt'", "drive letter"),
        ("tab\there.txt", r"'tab\x09here.txt'", "control character (U+0009)"),
        ("del\x7f.txt", r"'del\x7f.txt'", "control character (U+007F)"),
        ("c1\x85.txt", r"'c1\x85.txt'", "control character (U+0085)"),
    ],
)
def test_a_name_the_reader_refuses_is_never_written_by_the_same_rule(
    out: Path, tmp_path: Path, dest: Path, name: str, shown: str, why: str
) -> None:
    (out / "fine.txt").write_bytes(b"ok")
    (out / name).write_bytes(b"evil")
    chunks = zip_folder(out, 1, "adaptive", workers=0, limits=OutputLimits(), spill_to=None)
    with pytest.raises(UnsafeName, match=re.escape(why)) as refused:
        next(chunks)  # before the first byte
    assert refused.value.name == name
    assert f"the name {shown} is unsafe" in refused.value.problem
    archive = make_zip(tmp_path / "in.zip", {name: b"evil"})
    with pytest.raises(InvalidInput, match=re.escape(why)):
        extract_archive(archive, dest, ROOMY_LIMITS, workers=0)


@pytest.mark.parametrize(
    ("limits", "limit", "problem"),
    [
        (OutputLimits(max_entries=3), "max_entries", "more than 3 files and empty folders"),
        (OutputLimits(max_path_bytes=20), "max_path_bytes", "is 21 bytes, over 20"),
        (OutputLimits(max_directory_bytes=300), "max_directory_bytes", "would pass 300 bytes"),
    ],
)
def test_each_limit_stops_the_zip_before_its_first_byte(
    out: Path, limits: OutputLimits, limit: str, problem: str
) -> None:
    for n in range(4):
        (out / f"file-{n}.txt").write_bytes(b"x")
    (out / "sub").mkdir()
    (out / "sub" / "twenty-one-by.txt").write_bytes(b"x")  # 21 bytes with its folder
    chunks = zip_folder(out, 1, "adaptive", workers=0, limits=limits, spill_to=None)
    with pytest.raises(OutputOverLimit, match=problem) as refused:
        next(chunks)
    assert refused.value.limit == limit


def test_an_output_exactly_at_its_limits_is_sent_whole(out: Path) -> None:
    names = [f"file-{n}.txt" for n in range(4)]
    for name in names:
        (out / name).write_bytes(b"x")
    limits = OutputLimits(
        max_entries=4, max_path_bytes=10, max_directory_bytes=4 * (CENTRAL_MOST + 10)
    )
    body = b"".join(zip_folder(out, 1, "adaptive", workers=0, limits=limits, spill_to=None))
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.namelist() == names


def spill_files(folder: Path) -> list[os.stat_result]:
    """What this process holds open of files that were in `folder` (unlinked since)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # listdir's own, closed since
            continue
        if target.startswith(f"{folder}/.mis-central-") and target.endswith(" (deleted)"):
            found.append(os.stat(f"/proc/self/fd/{fd}"))
    return found


@pytest.mark.parametrize("workers", [1, 2])
def test_a_large_central_directory_waits_in_a_private_unlinked_file(
    out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    for n in range(300):
        (out / f"{n:04d}-{'n' * 100}").write_bytes(b"%d" % n)
    whole = b"".join(
        zip_folder(out, 1, "adaptive", workers=workers, limits=OutputLimits(), spill_to=None)
    )
    spill = tmp_path / "workspace"
    spill.mkdir()
    monkeypatch.setattr(directory, "KEEP", 0)  # every block that fills goes to the file
    monkeypatch.setattr(directory, "BLOCK", 4096)
    chunks = zip_folder(out, 1, "adaptive", workers=workers, limits=OutputLimits(), spill_to=spill)
    parts = list(chunks)  # (all of it: the directory comes at the end)
    assert b"".join(parts) == whole
    assert list(spill.iterdir()) == []  # unlinked as soon as it was made
    chunks.close()
    assert spill_files(spill) == []  # and closed


def test_the_spilled_file_is_mis_alone_s_while_it_is_used(out: Path, tmp_path: Path) -> None:
    for n in range(40):
        (out / f"{n:04d}-{'n' * 200}").write_bytes(b"")
    spill = tmp_path / "workspace"
    spill.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(directory, "KEEP", 0)
        patch.setattr(directory, "BLOCK", 1024)
        chunks = zip_folder(out, 1, "adaptive", workers=1, limits=OutputLimits(), spill_to=spill)
        seen: list[os.stat_result] = []
        for _ in chunks:
            seen = seen or spill_files(spill)
    assert seen, "the directory never went to a file"
    assert stat.S_IMODE(seen[0].st_mode) == 0o600
    assert seen[0].st_nlink == 0


def test_a_spill_folder_that_is_a_link_is_not_followed(out: Path, tmp_path: Path) -> None:
    for n in range(40):
        (out / f"{n:04d}-{'n' * 200}").write_bytes(b"")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "workspace").symlink_to(elsewhere)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(directory, "KEEP", 0)
        patch.setattr(directory, "BLOCK", 1024)
        spill = tmp_path / "workspace"
        chunks = zip_folder(out, 1, "adaptive", workers=1, limits=OutputLimits(), spill_to=spill)
        with pytest.raises(OSError, match=r"symbolic links|Not a directory") as refused:
            b"".join(chunks)
    assert refused.value.errno in (errno.ELOOP, errno.ENOTDIR)
    assert list(elsewhere.iterdir()) == []


def nest(top: Path, depth: int) -> int:
    """`depth` folders "m" one in the other under `top` (by descriptors: the path is long);
    the deepest, open."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("m", dir_fd=fd)
        child = os.open("m", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    return fd


def test_the_depth_the_reader_refuses_is_never_written(
    out: Path, tmp_path: Path, dest: Path
) -> None:
    os.close(nest(out, 128))  # an empty folder: 128 components, as deep as the reader takes
    chunks = zip_folder(out, 1, "adaptive", workers=0, limits=OutputLimits(), spill_to=None)
    body = b"".join(chunks)
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.namelist() == ["m/" * 128]
    (tmp_path / "deeper").mkdir()
    fd = nest(tmp_path / "deeper", 128)
    os.close(os.open("w", os.O_WRONLY | os.O_CREAT, dir_fd=fd))  # 129 components
    os.close(fd)
    deeper = tmp_path / "deeper"
    chunks = zip_folder(deeper, 1, "adaptive", workers=0, limits=OutputLimits(), spill_to=None)
    with pytest.raises(OutputProblem, match="nested more than 128 deep"):
        next(chunks)
    archive = make_zip(tmp_path / "in.zip", {"m/" * 128 + "w": b""})
    with pytest.raises(InvalidInput, match="nested more than 128 folders deep"):
        extract_archive(archive, dest, ROOMY_LIMITS, workers=0)
