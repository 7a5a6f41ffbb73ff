"""Property-based: hostile zips either extract inside the workspace or are refused with 400/413,
never write outside it, and never raise anything else."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mis_adapters.storage.archive import ExtractLimits, extract_archive
from mis_core.errors import InvalidInput, PayloadTooLarge

LIMITS = ExtractLimits(max_extracted_bytes=200_000, max_entries=20, max_compression_ratio=200)

segments = st.one_of(
    st.sampled_from(
        ["..", ".", "", "C:", "c:\\", "\\", "..\\..", "\x00", "a\x00b", "~", "$HOME", " "]
    ),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12),
    st.text(alphabet="abc", min_size=250, max_size=300),  # overlong
)
names = st.builds(
    lambda parts, lead, trail: lead + "/".join(parts) + trail,
    st.lists(segments, min_size=1, max_size=4),
    st.sampled_from(["", "/", "../", "\\", "C:/", "./"]),
    st.sampled_from(["", "/"]),
)
entries = st.lists(
    st.tuples(
        names,
        st.binary(max_size=2000),
        st.sampled_from(["file", "symlink", "fifo", "dir-mode"]),
    ),
    min_size=0,
    max_size=6,
)


def build(path: Path, items: list[tuple[str, bytes, str]], corrupt: tuple[int, int] | None) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data, kind in items:
            info = zipfile.ZipInfo(name or "x")
            info.create_system = 3
            mode = {
                "file": stat.S_IFREG,
                "symlink": stat.S_IFLNK,
                "fifo": stat.S_IFIFO,
                "dir-mode": stat.S_IFDIR,
            }[kind]
            info.external_attr = (mode | 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    if corrupt is not None:  # lying sizes, offsets and names: flip a byte of the archive
        raw = bytearray(path.read_bytes())
        offset, value = corrupt
        raw[offset % len(raw)] = value
        path.write_bytes(bytes(raw))


def snapshot(root: Path, skip: Path) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        if here == skip or skip in here.parents:
            continue
        found.update(str(here / n) for n in [*dirnames, *filenames])
    return found


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=entries,
    corrupt=st.one_of(st.none(), st.tuples(st.integers(0, 10_000), st.integers(0, 255))),
)
def test_hostile_archives_extract_inside_or_are_refused(
    items: list[tuple[str, bytes, str]], corrupt: tuple[int, int] | None
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        dest = root / "ws" / "input"
        dest.mkdir(parents=True)
        (root / "outside").mkdir()
        archive = root / "ws" / "upload.zip"
        build(archive, items, corrupt)
        before = snapshot(root, dest)

        # 400 or 413 are the only refusals; any other exception fails the test
        with contextlib.suppress(InvalidInput, PayloadTooLarge):
            extract_archive(archive, dest, LIMITS, workers=0)

        assert snapshot(root, dest) == before, "something was written outside the input folder"
        resolved = dest.resolve()
        for path in dest.rglob("*"):
            assert not path.is_symlink()
            assert resolved in path.resolve().parents
            assert path.is_dir() or path.is_file()
