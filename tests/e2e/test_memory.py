"""Memory stays bounded: a payload of a few hundred MB must not raise the server's peak RSS."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pytest

from tests.e2e.server import peak_rss, post_zip_into
from tests.harness.servers import Server, ServerFactory

MiB = 1024 * 1024
FILES = 240  # 240 MiB of input, which the MAP copies to its output


def make_study(path: Path, files: int) -> Path:
    """Half incompressible, half smooth, like compressed and raw DICOM pixel data."""
    rng = random.Random(7)
    ramp = bytes(range(256)) * (MiB // 256)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for n in range(files):
            data = rng.randbytes(MiB) if n % 2 else ramp
            zf.writestr(f"study/series-{n % 4}/slice-{n:04d}.dcm", data)
    return path


def post_file(server: Server, archive: Path, out: Path) -> int:
    with open(archive, "rb") as upload:
        return post_zip_into(server, upload, out, timeout=120).status_code


@pytest.mark.slow
def test_peak_rss_does_not_grow_with_the_payload(tmp_path: Path, mis_server: ServerFactory) -> None:
    small = make_study(tmp_path / "small.zip", 2)
    big = make_study(tmp_path / "big.zip", FILES)
    with mis_server(tmp_path, {"map": {"timeout_seconds": 100}}) as server:
        assert post_file(server, small, tmp_path / "small-out.zip") == 200
        before = peak_rss(server)
        assert post_file(server, big, tmp_path / "big-out.zip") == 200
        after = peak_rss(server)

    with zipfile.ZipFile(tmp_path / "big-out.zip") as zf:
        sizes = [i.file_size for i in zf.infolist() if i.filename.endswith(".dcm")]
    assert sizes == [MiB] * FILES
    growth = after - before
    print(f"peak RSS {before / MiB:.0f} MiB -> {after / MiB:.0f} MiB")
    assert growth < 48 * MiB, f"peak RSS grew by {growth / MiB:.0f} MiB for a {FILES} MiB payload"
