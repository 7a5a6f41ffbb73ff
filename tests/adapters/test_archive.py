"""Safe extraction with real archives made by zipfile and by the zip command."""

from __future__ import annotations

import os
import subprocess
import zipfile
from pathlib import Path

import pytest

from mis_adapters.storage.archive import ExtractLimits, extract_archive
from mis_adapters.zip import unpack
from mis_core.errors import InvalidInput, MisError, PayloadTooLarge
from tests.harness.unavailable import require_tool
from tests.zips import ROOMY_LIMITS as LIMITS
from tests.zips import (
    make_lying_size_zip,
    make_overlapping_zip,
    make_special_file_zip,
    make_symlink_zip,
    make_zip,
    patch_bytes,
)

# Every test here, with the unpacking threads and with its worker processes (conftest.py).
pytestmark = pytest.mark.usefixtures("unpack_by")


def tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_nested_folders_and_unicode_names_land_as_laid_out(tmp_path: Path, dest: Path) -> None:
    files = {
        "series-1/IM0001.dcm": b"\x00" * 300,
        "series-1/IM0002.dcm": b"\x01" * 300,
        "série 2/ünïcødé ✓.dcm": b"pixels",
        "deep/a/b/c/d/e.txt": b"deep",
    }
    archive = make_zip(tmp_path / "in.zip", files)
    assert extract_archive(archive, dest, LIMITS, workers=0) == 4
    assert tree(dest) == files


def test_archive_made_by_the_zip_command(tmp_path: Path, dest: Path) -> None:
    zip_cmd = require_tool("zip")
    source = tmp_path / "study"
    (source / "CT" / "série").mkdir(parents=True)
    (source / "CT" / "série" / "slice 1.dcm").write_bytes(b"a" * 5000)
    (source / "CT" / "empty-folder").mkdir()
    (source / "notes.txt").write_text("hello")
    subprocess.run([zip_cmd, "-qr", str(tmp_path / "in.zip"), "."], cwd=source, check=True)

    assert extract_archive(tmp_path / "in.zip", dest, LIMITS, workers=0) == 2
    assert tree(dest) == {"CT/série/slice 1.dcm": b"a" * 5000, "notes.txt": b"hello"}
    assert (dest / "CT" / "empty-folder").is_dir()


def test_empty_archive_gives_an_empty_input(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(tmp_path / "empty.zip", {})
    assert extract_archive(archive, dest, LIMITS, workers=0) == 0
    assert list(dest.iterdir()) == []


def test_zip64_entries_are_read(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "z64.zip"
    with zipfile.ZipFile(archive, "w") as zf, zf.open("big.raw", "w", force_zip64=True) as f:
        f.write(b"z" * 100_000)
    assert extract_archive(archive, dest, LIMITS, workers=0) == 1
    assert (dest / "big.raw").read_bytes() == b"z" * 100_000


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.txt", "'..' path component"),
        ("ok/../../evil.txt", "'..' path component"),
        ("/tmp/evil.txt", "absolute path"),
        ("C:/evil.txt", "drive letter"),
        ("..\\evil.txt", "backslash"),
        ("a//b.txt", "'empty' path component"),
        ("./a.txt", "'.' path component"),
        ("x" * 300, "longer than 255 bytes"),
    ],
)
def test_unsafe_names_are_refused_and_nothing_is_written(
    tmp_path: Path, dest: Path, name: str, why: str
) -> None:
    archive = make_zip(tmp_path / "in.zip", {"fine.txt": b"ok", name: b"evil"})
    with pytest.raises(InvalidInput, match=why):
        extract_archive(archive, dest, LIMITS, workers=0)
    assert list(dest.iterdir()) == []
    assert sorted(p.name for p in tmp_path.rglob("*evil*")) == []


def test_nul_byte_in_a_name_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(tmp_path / "in.zip", {"aQb.txt": b"x"})
    patch_bytes(archive, b"aQb.txt", b"a\x00b.txt")
    with pytest.raises(InvalidInput, match="NUL byte"):
        extract_archive(archive, dest, LIMITS, workers=0)


def test_symlink_entries_are_refused(tmp_path: Path, dest: Path) -> None:
    with pytest.raises(InvalidInput, match="symbolic link"):
        extract_archive(make_symlink_zip(tmp_path / "in.zip"), dest, LIMITS, workers=0)
    assert list(dest.iterdir()) == []


def test_symlink_made_by_the_zip_command_is_refused(tmp_path: Path, dest: Path) -> None:
    zip_cmd = require_tool("zip")
    source = tmp_path / "src"
    source.mkdir()
    (source / "passwd").symlink_to("/etc/passwd")
    subprocess.run(
        [zip_cmd, "-q", "--symlinks", str(tmp_path / "in.zip"), "passwd"], cwd=source, check=True
    )
    with pytest.raises(InvalidInput, match="symbolic link"):
        extract_archive(tmp_path / "in.zip", dest, LIMITS, workers=0)


def test_special_files_are_refused(tmp_path: Path, dest: Path) -> None:
    with pytest.raises(InvalidInput, match="special file"):
        extract_archive(make_special_file_zip(tmp_path / "in.zip"), dest, LIMITS, workers=0)


def test_duplicate_names_are_refused(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "dup.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("scan.dcm", b"first")
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("scan.dcm", b"second")
    with pytest.raises(InvalidInput, match="same name"):
        extract_archive(archive, dest, LIMITS, workers=0)


def test_a_name_that_is_both_file_and_folder_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(tmp_path / "in.zip", {"a": b"file", "a/b": b"inside"})
    with pytest.raises(InvalidInput, match="both a file and a folder"):
        extract_archive(archive, dest, LIMITS, workers=0)


def test_a_file_made_by_another_writer_just_before_its_folder_is_refused_as_such(
    tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race the writer threads can run: the folder "a" is missing when looked for, and by
    the time it is made, another thread has written the file "a"."""
    real_mkdir = os.mkdir

    def file_first(name: str, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        if name == "a":
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY, 0o600, dir_fd=dir_fd))
        real_mkdir(name, mode, dir_fd=dir_fd)

    monkeypatch.setattr(unpack.os, "mkdir", file_first)
    archive = make_zip(tmp_path / "in.zip", {"a/b": b"inside"})
    with pytest.raises(InvalidInput, match="both a file and a folder"):
        extract_archive(archive, dest, LIMITS, workers=1)


def test_encrypted_entries_are_refused(tmp_path: Path, dest: Path) -> None:
    zip_cmd = require_tool("zip")
    (tmp_path / "secret.txt").write_text("patient data")
    subprocess.run(
        [zip_cmd, "-q", "-P", "pw", str(tmp_path / "in.zip"), "secret.txt"],
        cwd=tmp_path,
        check=True,
    )
    with pytest.raises(InvalidInput, match="encrypted"):
        extract_archive(tmp_path / "in.zip", dest, LIMITS, workers=0)


def test_not_a_zip_is_refused(tmp_path: Path, dest: Path) -> None:
    junk = tmp_path / "in.zip"
    junk.write_bytes(b"this is a DICOM file, not a zip" * 100)
    with pytest.raises(InvalidInput, match="not a readable zip archive"):
        extract_archive(junk, dest, LIMITS, workers=0)


def test_corrupt_data_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(tmp_path / "in.zip", {"a.txt": b"hello world " * 1000})
    data = bytearray(archive.read_bytes())
    data[60:80] = b"\xff" * 20  # inside the deflate stream of the only entry
    archive.write_bytes(bytes(data))
    with pytest.raises(InvalidInput):
        extract_archive(archive, dest, LIMITS, workers=0)


def test_small_header_huge_expansion_bomb_is_refused_without_writing_it(
    tmp_path: Path, dest: Path
) -> None:
    archive = make_lying_size_zip(tmp_path / "bomb.zip", real_size=20_000_000, declared=1000)
    assert archive.stat().st_size < 100_000
    with pytest.raises(InvalidInput):
        extract_archive(archive, dest, LIMITS, workers=0)
    assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) <= 1000


def test_declared_expansion_over_the_limit_is_413_before_writing(
    tmp_path: Path, dest: Path
) -> None:
    archive = make_zip(tmp_path / "in.zip", {"a.raw": bytes(600_000), "b.raw": bytes(600_000)})
    limits = ExtractLimits(max_extracted_bytes=1_000_000, max_entries=10, max_compression_ratio=1e9)
    with pytest.raises(PayloadTooLarge, match="max_extracted_bytes"):
        extract_archive(archive, dest, limits, workers=0)
    assert list(dest.iterdir()) == []


def test_compression_ratio_over_the_limit_is_413(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(tmp_path / "in.zip", {"zeros.raw": bytes(80 * 1024 * 1024)})
    with pytest.raises(PayloadTooLarge, match="max_compression_ratio"):
        extract_archive(archive, dest, LIMITS, workers=0)
    assert list(dest.iterdir()) == []


def test_too_many_entries_is_413(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(tmp_path / "in.zip", {f"f{i}": b"" for i in range(11)})
    limits = ExtractLimits(max_extracted_bytes=10**9, max_entries=10, max_compression_ratio=200)
    with pytest.raises(PayloadTooLarge, match="11 entries"):
        extract_archive(archive, dest, limits, workers=0)


def test_overlapping_entries_are_refused(tmp_path: Path, dest: Path) -> None:
    with pytest.raises(InvalidInput, match="overlapping"):
        extract_archive(make_overlapping_zip(tmp_path / "in.zip"), dest, LIMITS, workers=0)


def test_every_refusal_is_a_mis_error_with_a_message(tmp_path: Path, dest: Path) -> None:
    archive = make_symlink_zip(tmp_path / "in.zip")
    with pytest.raises(MisError) as info:
        extract_archive(archive, dest, LIMITS, workers=0)
    assert info.value.code == "invalid_input"
    assert "only regular files and folders" in info.value.message
