"""Deterministic DICOM-like payloads: half incompressible (like compressed pixel data), half
smooth (like raw 16-bit pixels), each file with a small header. Made once, then cached."""

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

    @property
    def total(self) -> int:
        return self.files * self.file_size


PROFILES = [
    Profile("one-1MB-file", 1, 1 * MiB),
    Profile("CT-500x512KB", 500, 512 * KiB),
    Profile("study-1GB", 2000, 512 * KiB),
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
    if index % 2:
        body = rng.randbytes(size - len(header))
    else:
        offset = rng.randrange(0, len(smooth) // 2) & ~1
        tiled = smooth * (size // len(smooth) + 2)
        body = tiled[offset : offset + size - len(header)]
    return header + body


def payload(profile: Profile, cache: Path) -> Path:
    """The profile's input zip (deflate level 1, as a quick client would make it), cached."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{profile.name}.zip"
    if target.exists():
        return target
    smooth = _smooth_block(random.Random(0), 256 * KiB)
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for n in range(profile.files):
            zf.writestr(
                f"study/series-{n % 4}/IM{n:05d}.dcm", file_bytes(n, profile.file_size, smooth)
            )
    partial.rename(target)
    return target
