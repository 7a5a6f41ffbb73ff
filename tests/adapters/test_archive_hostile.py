"""Archives built to lie: end records, directory records, local headers and sizes that do not
agree, refused before they cost memory or write anything they should not."""

from __future__ import annotations

import bz2
import io
import lzma
import os
import stat
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest

from mis_adapters.storage.archive import ExtractLimits, extract_archive
from mis_adapters.storage.layout import INPUT_FILE_MODE, INPUT_FOLDER_MODE
from mis_adapters.zip import OutputLimits, unpack, zip_folder
from mis_core.errors import InvalidInput, PayloadTooLarge
from tests.zips import ROOMY_LIMITS as LIMITS
from tests.zips import RawEntry, deflated, make_zip, many_entries_zip, raw_zip

# Every test here, with the unpacking threads and with its worker processes (conftest.py).
pytestmark = pytest.mark.usefixtures("unpack_by")


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "in.zip"
    path.write_bytes(data)
    return path


def written(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_hand_built_archives_extract(tmp_path: Path, dest: Path) -> None:
    """The builder itself makes good archives: the refusals below are about their lies."""
    data = b"pixels " * 1000
    archive = raw_zip(
        [
            RawEntry(b"a/stored.dcm", data),
            RawEntry(
                b"a/deflated.dcm", deflated(data), method=8, size=len(data), crc=zlib.crc32(data)
            ),
            RawEntry(b"big.dcm", data, zip64=True),
        ],
        zip64_end=True,
        comment=b"made by hand",
    )
    assert extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0) == 3
    assert (dest / "a" / "deflated.dcm").read_bytes() == data
    assert (dest / "big.dcm").read_bytes() == data


def test_an_archive_claiming_millions_of_entries_is_413_before_any_is_read(
    tmp_path: Path, dest: Path
) -> None:
    archive = raw_zip([RawEntry(b"a.txt", b"x")], zip64_end=True, claimed_entries=5_000_000)
    with pytest.raises(PayloadTooLarge, match="5000000 entries"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)
    assert written(dest) == []


def test_a_real_archive_of_a_million_entries_is_413_from_its_end_record(
    tmp_path: Path, dest: Path
) -> None:
    archive = many_entries_zip(tmp_path / "many.zip", 1_000_000)
    limits = ExtractLimits(
        max_extracted_bytes=10**9, max_entries=100_000, max_compression_ratio=200
    )
    with pytest.raises(PayloadTooLarge, match="1000000 entries"):
        extract_archive(archive, dest, limits, workers=0)
    assert written(dest) == []


def test_a_central_directory_over_its_size_limit_is_413(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "comments.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for n in range(20):
            info = zipfile.ZipInfo(f"f{n}")
            info.comment = b"c" * 65_000
            zf.writestr(info, b"")
    limits = ExtractLimits(max_extracted_bytes=10**9, max_entries=20, max_compression_ratio=200)
    with pytest.raises(PayloadTooLarge, match="central directory is"):
        extract_archive(archive, dest, limits, workers=0)


@pytest.mark.parametrize(
    ("compression", "method"),
    [(zipfile.ZIP_BZIP2, "bzip2"), (zipfile.ZIP_LZMA, "LZMA")],
)
def test_bzip2_and_lzma_entries_are_refused_by_method_before_any_data_is_read(
    tmp_path: Path, dest: Path, compression: int, method: str
) -> None:
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w", compression=compression) as zf:
        zf.writestr("fine.txt", b"fine")
    with pytest.raises(InvalidInput, match=f"the {method} compression method"):
        extract_archive(archive, dest, LIMITS, workers=0)
    assert written(dest) == []


@pytest.mark.parametrize("method", [12, 14])
def test_a_bzip2_or_lzma_bomb_lying_about_its_size_is_refused_unread(
    tmp_path: Path, dest: Path, method: int
) -> None:
    bomb = bytes(50_000_000)
    packed = bz2.compress(bomb) if method == 12 else lzma.compress(bomb, format=lzma.FORMAT_ALONE)
    archive = raw_zip([RawEntry(b"bomb.raw", packed, method=method, size=1000, crc=0)])
    with pytest.raises(InvalidInput, match="compression method"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)
    assert written(dest) == []


def test_a_deflate_entry_lying_about_its_size_stops_one_byte_past_it(
    tmp_path: Path, dest: Path
) -> None:
    bomb = bytes(200_000_000)
    archive = raw_zip([RawEntry(b"bomb.raw", deflated(bomb), method=8, size=1000, crc=0)])
    with pytest.raises(InvalidInput, match="expands beyond the size it declares"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)
    assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) <= 1000


def test_a_deflate_entry_shorter_than_declared_is_refused(tmp_path: Path, dest: Path) -> None:
    data = b"abc" * 100
    archive = raw_zip([RawEntry(b"a", deflated(data), method=8, size=10_000, crc=zlib.crc32(data))])
    with pytest.raises(InvalidInput, match="shorter than the size it declares"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)


def test_a_cut_deflate_stream_is_refused(tmp_path: Path, dest: Path) -> None:
    data = os.urandom(100_000)
    cut = deflated(data)[:-100]
    archive = raw_zip([RawEntry(b"a", cut, method=8, size=len(data), crc=zlib.crc32(data))])
    with pytest.raises(InvalidInput, match="corrupt"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)


def test_a_wrong_checksum_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = raw_zip([RawEntry(b"a", b"data", crc=zlib.crc32(b"other"))])
    with pytest.raises(InvalidInput, match="checksum"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)


def test_a_stored_entry_whose_sizes_disagree_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = raw_zip([RawEntry(b"a", b"data", size=1_000_000)])
    with pytest.raises(InvalidInput, match="sizes disagree"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)
    assert written(dest) == []


def test_a_local_header_naming_another_file_is_refused(tmp_path: Path, dest: Path) -> None:
    """Readers that trust the local header would see ../evil, others safe.txt: refuse both."""
    archive = raw_zip([RawEntry(b"safe.txt", b"x", local_name=b"../evil.")])
    with pytest.raises(InvalidInput, match="local header names another file"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)
    assert written(dest) == []


def test_a_local_header_with_another_method_is_refused(tmp_path: Path, dest: Path) -> None:
    data = deflated(b"x" * 1000)
    archive = raw_zip([RawEntry(b"a", data, method=8, size=1000, crc=0, local_method=0)])
    with pytest.raises(InvalidInput, match="disagree on how it is stored"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)


def test_encryption_declared_only_in_the_local_header_is_refused(
    tmp_path: Path, dest: Path
) -> None:
    archive = raw_zip([RawEntry(b"a", b"x", local_flags=0x801)])
    with pytest.raises(InvalidInput, match="disagree on how it is stored"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)


def test_entries_sharing_data_are_refused_before_writing(tmp_path: Path, dest: Path) -> None:
    data = deflated(bytes(1_000_000))
    first = RawEntry(b"a.raw", data, method=8, size=1_000_000, crc=zlib.crc32(bytes(1_000_000)))
    archive = raw_zip([first, RawEntry(b"b.raw", b"", offset=0, size=0)])
    with pytest.raises(InvalidInput, match="overlapping"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)
    assert written(dest) == []


def test_an_entry_pointing_into_another_entrys_data_is_refused(tmp_path: Path, dest: Path) -> None:
    inner = raw_zip([RawEntry(b"x", b"payload")])[:-22]  # a local header hidden in data
    archive = raw_zip([RawEntry(b"outer", inner), RawEntry(b"hidden", b"payload", offset=35)])
    with pytest.raises(InvalidInput):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)
    assert written(dest) == []


@pytest.mark.parametrize("offset", [2**40, 2**64 - 1])
def test_a_zip64_extra_field_lying_about_the_offset_is_refused(
    tmp_path: Path, dest: Path, offset: int
) -> None:
    archive = bytearray(raw_zip([RawEntry(b"a", b"x", zip64=True)], zip64_end=True))
    extra = archive.index(b"\x01\x00\x18\x00")  # the zip64 extra field of the directory record
    archive[extra + 20 : extra + 28] = offset.to_bytes(8, "little")
    with pytest.raises(InvalidInput, match=r"overlapping|corrupt"):
        extract_archive(write(tmp_path, bytes(archive)), dest, LIMITS, workers=0)


def test_saturated_sizes_without_a_zip64_extra_field_are_refused(
    tmp_path: Path, dest: Path
) -> None:
    archive = raw_zip([RawEntry(b"a", b"x", size=0xFFFFFFFF)])
    with pytest.raises(InvalidInput, match="zip64 extra field that is not there"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)


def test_a_zip64_extra_field_too_short_for_its_sizes_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = bytearray(raw_zip([RawEntry(b"a", b"x", zip64=True)]))
    extra = archive.index(b"\x01\x00\x18\x00")
    archive[extra + 2 : extra + 4] = (4).to_bytes(2, "little")  # says 4 bytes: one size cut
    with pytest.raises(InvalidInput, match="corrupt"):
        extract_archive(write(tmp_path, bytes(archive)), dest, LIMITS, workers=0)


def test_more_entries_claimed_than_the_directory_holds_is_refused(
    tmp_path: Path, dest: Path
) -> None:
    archive = raw_zip([RawEntry(b"a", b"x"), RawEntry(b"b", b"y")], claimed_entries=3)
    with pytest.raises(InvalidInput, match="corrupt"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)


def test_data_before_the_archive_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = raw_zip([RawEntry(b"a", b"x")], prefix=b"#!/bin/sh\nexit 0\n" * 10)
    with pytest.raises(InvalidInput, match="not where its end record says"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)


def test_an_end_record_signature_inside_the_comment_is_not_taken(
    tmp_path: Path, dest: Path
) -> None:
    fake_end = b"PK\x05\x06" + bytes(18)  # an empty archive's end record, in the comment
    archive = raw_zip([RawEntry(b"real.txt", b"x")], comment=b"note " + fake_end + b" more")
    assert extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0) == 1


def test_a_comment_ending_in_an_end_record_is_refused_not_read_as_empty(
    tmp_path: Path, dest: Path
) -> None:
    """zipfile would read this as an empty archive, other readers as one holding real.txt."""
    fake_end = b"PK\x05\x06" + bytes(18)
    archive = raw_zip([RawEntry(b"real.txt", b"x")], comment=b"note " + fake_end)
    with pytest.raises(InvalidInput, match="not where its end record says"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)


def test_a_multi_volume_archive_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = bytearray(raw_zip([RawEntry(b"a", b"x")]))
    archive[-18:-16] = (1).to_bytes(2, "little")  # the end record's disk number
    with pytest.raises(InvalidInput, match="split over several parts"):
        extract_archive(write(tmp_path, bytes(archive)), dest, LIMITS, workers=0)


def test_a_name_flagged_utf8_that_is_not_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = raw_zip([RawEntry(b"scan-\xff.dcm", b"x")])
    with pytest.raises(InvalidInput, match="not valid UTF-8"):
        extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0)


def test_an_unflagged_non_utf8_name_is_read_as_cp437(tmp_path: Path, dest: Path) -> None:
    archive = raw_zip([RawEntry(b"caf\x82.txt", b"x", flags=0)])
    assert extract_archive(write(tmp_path, archive), dest, LIMITS, workers=0) == 1
    assert written(dest) == ["café.txt"]


def test_a_path_longer_than_the_volume_holds_is_400_naming_the_rule(
    tmp_path: Path, dest: Path
) -> None:
    name = "/".join(["d" * 200] * 21) + "/f"  # every component fits; the whole path does not
    archive = make_zip(tmp_path / "in.zip", {name: b"x"})
    with pytest.raises(InvalidInput, match="longest path the payload volume can hold"):
        extract_archive(archive, dest, LIMITS, workers=0)
    assert written(dest) == []


def test_a_component_over_the_volume_name_limit_is_400(tmp_path: Path, dest: Path) -> None:
    name_max = os.statvfs(dest).f_namemax
    archive = make_zip(tmp_path / "in.zip", {"a/" + "n" * (name_max + 1): b"x"})
    with pytest.raises(InvalidInput, match=f"longer than {name_max} bytes"):
        extract_archive(archive, dest, LIMITS, workers=0)


def test_nesting_deeper_than_the_limit_is_400(tmp_path: Path, dest: Path) -> None:
    archive = make_zip(tmp_path / "in.zip", {"d/" * 129 + "f": b"x"})
    with pytest.raises(InvalidInput, match="nested more than 128 folders deep"):
        extract_archive(archive, dest, LIMITS, workers=0)


def test_messages_never_repeat_an_entry_name(tmp_path: Path, dest: Path) -> None:
    name = "PATIENT-Jane-Doe-1970/" + "x" * 300
    archive = make_zip(tmp_path / "in.zip", {name: b"x"})
    with pytest.raises(InvalidInput) as refused:
        extract_archive(archive, dest, LIMITS, workers=0)
    assert "Jane" not in refused.value.message


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_extracted_modes_grant_nothing_to_others_whatever_the_umask(
    tmp_path: Path, dest: Path, umask: int
) -> None:
    archive = make_zip(tmp_path / "in.zip", {"series/one/a.dcm": b"x", "b.txt": b"y"})
    previous = os.umask(umask)
    try:
        extract_archive(archive, dest, LIMITS, workers=0)
    finally:
        os.umask(previous)
    modes = {
        p.relative_to(dest).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in dest.rglob("*")
    }
    assert modes == {
        "series": INPUT_FOLDER_MODE,
        "series/one": INPUT_FOLDER_MODE,
        "series/one/a.dcm": INPUT_FILE_MODE,
        "b.txt": INPUT_FILE_MODE,
    }
    assert all(mode & 0o007 == 0 for mode in modes.values())


def test_what_the_output_zip_writer_makes_extracts_again(tmp_path: Path, dest: Path) -> None:
    """The response format (data descriptors, zip64 where needed) reads back."""
    source = tmp_path / "out"
    (source / "series").mkdir(parents=True)
    (source / "series" / "noise.dcm").write_bytes(os.urandom(100_000))
    (source / "series" / "smooth.dcm").write_bytes(bytes(range(256)) * 400)
    (source / "empty").mkdir()
    for policy in ("adaptive", "deflate", "stored"):
        body = b"".join(
            zip_folder(source, 1, policy, workers=0, limits=OutputLimits(), spill_to=None)
        )
        archive = write(tmp_path, body)
        target = dest / policy
        target.mkdir()
        assert extract_archive(archive, target, LIMITS, workers=0) == 2
        for name in ("noise.dcm", "smooth.dcm"):
            assert (target / "series" / name).read_bytes() == (
                source / "series" / name
            ).read_bytes()
        assert (target / "empty").is_dir()
        with zipfile.ZipFile(io.BytesIO(body)) as zf:
            assert zf.testzip() is None


def test_a_local_header_with_other_sizes_than_the_directory_is_refused(
    tmp_path: Path, dest: Path
) -> None:
    """A reader that trusts local headers would stop after 2 bytes; refuse the ambiguity."""
    archive = bytearray(raw_zip([RawEntry(b"a.txt", b"hello", flags=0x800)]))
    archive[18:26] = (2).to_bytes(4, "little") * 2  # the local header's two sizes
    with pytest.raises(InvalidInput, match="disagree on its size or checksum"):
        extract_archive(write(tmp_path, bytes(archive)), dest, LIMITS, workers=0)


def test_zeros_in_the_local_header_are_fine_with_a_data_descriptor(
    tmp_path: Path, dest: Path
) -> None:
    archive = bytearray(raw_zip([RawEntry(b"a.txt", b"hello", flags=0x808)]))
    archive[14:26] = bytes(12)  # CRC and sizes left for the data descriptor, as streamers do
    assert extract_archive(write(tmp_path, bytes(archive)), dest, LIMITS, workers=0) == 1
    assert (dest / "a.txt").read_bytes() == b"hello"


def test_end_records_that_disagree_are_refused(tmp_path: Path, dest: Path) -> None:
    archive = bytearray(raw_zip([RawEntry(b"a", b"x"), RawEntry(b"b", b"y")], zip64_end=True))
    end = archive.rindex(b"PK\x05\x06")
    archive[end + 8 : end + 12] = (1).to_bytes(2, "little") * 2  # says 1 entry, zip64 says 2
    with pytest.raises(InvalidInput, match="two end records disagree"):
        extract_archive(write(tmp_path, bytes(archive)), dest, LIMITS, workers=0)


@pytest.mark.parametrize("workers", [1, 4])
def test_parallel_writing_gives_the_same_tree_and_the_same_refusals(
    tmp_path: Path, dest: Path, workers: int
) -> None:
    big = unpack.PARALLEL_FROM + 1  # written by the workers; the rest by the reading thread
    files = {
        f"s{n % 7}/d{n % 3}/f{n}.dcm": os.urandom(big + n if n % 10 == 0 else n % 5000)
        for n in range(600)
    }
    archive = make_zip(tmp_path / "in.zip", files)
    assert extract_archive(archive, dest, LIMITS, workers=workers) == 600
    assert {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*.dcm")} == files

    for size in (1, big):  # a clash among small entries, and among large ones
        clash = tmp_path / f"clash-{size}.zip"
        entries = [RawEntry(f"s/{n}".encode(), bytes(size)) for n in range(100)]
        entries.insert(80, RawEntry(b"s/17", b"again"))
        clash.write_bytes(raw_zip(entries))
        target = tmp_path / f"clash-{size}"
        target.mkdir()
        with pytest.raises(InvalidInput, match="same name"):
            extract_archive(clash, target, LIMITS, workers=workers)


def test_small_entries_are_written_by_the_reading_thread_large_ones_by_the_workers(
    tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Small files cost their creation, which threads only contend for; large ones cost
    inflating, which they share."""
    writers: dict[str, str] = {}
    real_entry = unpack.EntryWriter.entry

    def entry(self: unpack.EntryWriter, record: Any, bound: int) -> int:
        writers[record.name] = threading.current_thread().name
        return real_entry(self, record, bound)

    monkeypatch.setattr(unpack.EntryWriter, "entry", entry)
    files = {"small.dcm": b"x" * 100, "large.dcm": os.urandom(unpack.PARALLEL_FROM * 2)}
    extract_archive(make_zip(tmp_path / "in.zip", files), dest, LIMITS, workers=2)
    assert writers["small.dcm"] == threading.current_thread().name
    assert writers["large.dcm"].startswith("mis-unpack")
