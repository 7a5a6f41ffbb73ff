"""Deterministic DICOM-like payloads: half incompressible (like compressed pixel data), half
smooth (like raw 16-bit pixels), each file with a small header. Made once, then cached.

Two shapes: series of 512 KB slices (deflate level 1, as a quick client would zip them), and
many small files (100,000 of 4 KB, stored, as the issue that asked for it measured them:
~400 MB of zip whose cost is per file, not per byte, so deflating it would only add a
compression step the client pays and MIS's unpacking hides).
"""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import attrs

KiB = 1024
MiB = 1024 * KiB


@attrs.frozen
class Profile:
    name: str
    files: int
    file_size: int
    stored: bool = False  # the input zip's entries: stored, or deflated at level 1
    per_series: int = 0  # files per series folder (0: four series, the slices interleaved)
    series_per_study: int = 20

    @property
    def total(self) -> int:
        return self.files * self.file_size

    def member(self, n: int) -> str:
        """File n's name in the zip: study/series folders, as a PACS export lays them out."""
        if not self.per_series:
            return f"study/series-{n % 4}/IM{n:05d}.dcm"
        series = n // self.per_series
        study = series // self.series_per_study
        return f"study-{study:02d}/series-{series % self.series_per_study:02d}/IM{n:06d}.dcm"


SMALL_FILES = "small-100kx4KB"
PROFILES = [
    Profile("one-1MB-file", 1, 1 * MiB),
    Profile("CT-500x512KB", 500, 512 * KiB),
    Profile("study-1GB", 2000, 512 * KiB),
    # 10 studies x 20 series x 500 files
    Profile(SMALL_FILES, 100_000, 4 * KiB, stored=True, per_series=500),
]


def _smooth_block(rng: random.Random, size: int) -> bytes:
    """16-bit little-endian pixels: a gradient with a little noise, as raw CT slices are."""
    noise = rng.randbytes(size // 2)
    out = bytearray(size)
    for i in range(size // 2):
        value = 1000 + (i % 512) * 2 + (noise[i] & 0x07)
        out[2 * i] = value & 0xFF
        out[2 * i + 1] = value >> 8
    return bytes(out)


def file_bytes(index: int, size: int, smooth: bytes) -> bytes:
    rng = random.Random(index)
    header = (b"DICM" + f"(0020,0013) InstanceNumber {index}\n".encode() * 40)[: 2 * KiB]
    length = size - len(header)
    if index % 2:
        body = rng.randbytes(length)
    else:
        offset = rng.randrange(0, len(smooth) // 2) & ~1
        if offset + length <= len(smooth):  # the same bytes as tiling, without the copies
            body = smooth[offset : offset + length]
        else:
            tiled = smooth * (size // len(smooth) + 2)
            body = tiled[offset : offset + length]
    return header + body


def payload(profile: Profile, cache: Path) -> Path:
    """The profile's input zip, cached under its name."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{profile.name}.zip"
    if target.exists():
        return target
    smooth = _smooth_block(random.Random(0), 256 * KiB)
    partial = target.with_suffix(".partial")
    method = zipfile.ZIP_STORED if profile.stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(partial, "w", compression=method, compresslevel=1) as zf:
        for n in range(profile.files):
            zf.writestr(profile.member(n), file_bytes(n, profile.file_size, smooth))
    partial.rename(target)
    return target
