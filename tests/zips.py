"""Building real zip archives for tests, including the hostile ones."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path


def make_zip(path: Path, files: dict[str, bytes], **kwargs: object) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, **kwargs) as zf:  # type: ignore[arg-type]
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_symlink_zip(path: Path, name: str = "link", target: str = "/etc/passwd") -> Path:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok.txt", b"fine")
        zf.writestr(info, target)
    return path


def make_special_file_zip(path: Path) -> Path:
    info = zipfile.ZipInfo("fifo")
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(info, b"")
    return path


def patch_bytes(path: Path, old: bytes, new: bytes) -> Path:
    """Replace every occurrence of `old` (same length) in the archive's bytes."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert old in data
    path.write_bytes(data.replace(old, new))
    return path


def make_lying_size_zip(path: Path, real_size: int, declared: int) -> Path:
    """One entry of `real_size` zero bytes whose headers claim it is `declared` bytes long."""
    make_zip(path, {"scan.raw": bytes(real_size)})
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("scan.raw")
    data = bytearray(path.read_bytes())
    size_field = real_size.to_bytes(4, "little")
    for offset in _find_all(data, size_field):
        data[offset : offset + 4] = declared.to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert info.file_size == real_size
    return path


def make_overlapping_zip(path: Path) -> Path:
    """Two central-directory entries that point at the same local header and data."""
    make_zip(path, {"a.bin": bytes(1000), "b.bin": bytes(1000)})
    with zipfile.ZipFile(path) as zf:
        second = zf.getinfo("b.bin")
    data = bytearray(path.read_bytes())
    central = data.index(b"PK\x01\x02", data.index(b"PK\x01\x02") + 4)  # b.bin's record
    data[central + 42 : central + 46] = (0).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    assert second.header_offset > 0
    return path


def _find_all(data: bytearray, needle: bytes) -> list[int]:
    found, start = [], 0
    while (at := data.find(needle, start)) >= 0:
        found.append(at)
        start = at + 1
    return found
