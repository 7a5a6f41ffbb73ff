"""The local payload volume: workspaces, streamed upload and output, sweeping."""

from __future__ import annotations

import errno
import io
import os
import stat
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mis_adapters.storage import deletion, volume
from mis_adapters.storage.layout import WORKSPACE_MARKER_MODE
from mis_adapters.storage.volume import MARKER, LocalStorage
from mis_core.errors import Busy, MapFailed
from tests.built import local_storage
from tests.storage import leave_workspace
from tests.zips import make_zip

pytestmark = pytest.mark.anyio


async def chunks_of(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def unzip_stream(storage: LocalStorage, workspace: object) -> dict[str, bytes]:
    body = b"".join([chunk async for chunk in storage.pack_output(workspace)])  # type: ignore[arg-type]
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name) for name in zf.namelist()}


async def test_round_trip_from_upload_to_output_zip(tmp_path: Path) -> None:
    storage = local_storage(tmp_path / "payload")
    archive = make_zip(tmp_path / "in.zip", {"a/b.dcm": os.urandom(50_000), "c.txt": b"hi"})
    workspace = await storage.create("req-1")

    assert (
        await storage.receive(workspace, chunks_of(archive.read_bytes())) == archive.stat().st_size
    )
    assert await storage.extract(workspace) == 2
    assert not (Path(workspace.root) / "upload.zip").exists()  # space freed once unpacked
    for path in Path(workspace.input_dir).rglob("*"):
        target = Path(workspace.output_dir) / path.relative_to(workspace.input_dir)
        if path.is_dir():
            target.mkdir()
        else:
            target.write_bytes(path.read_bytes())
    (Path(workspace.output_dir) / "empty-dir").mkdir()

    files = await unzip_stream(storage, workspace)
    with zipfile.ZipFile(archive) as original:
        assert files["a/b.dcm"] == original.read("a/b.dcm")
    assert files["c.txt"] == b"hi"
    assert files["empty-dir/"] == b""

    await storage.delete(workspace)
    assert list((tmp_path / "payload").iterdir()) == []


async def test_empty_output_folder_gives_a_valid_empty_zip(tmp_path: Path) -> None:
    storage = local_storage(tmp_path / "payload")
    workspace = await storage.create("req-1")
    assert await unzip_stream(storage, workspace) == {}


async def test_output_files_over_max_output_bytes_in_all_are_refused_before_any_byte(
    tmp_path: Path,
) -> None:
    storage = local_storage(tmp_path / "payload", max_output_bytes=1000)
    workspace = await storage.create("req-1")
    (Path(workspace.output_dir) / "a").write_bytes(b"x" * 600)
    with open(Path(workspace.output_dir) / "sparse", "wb") as sparse:
        sparse.truncate(401)  # no data written: its size counts all the same
    chunks = storage.pack_output(workspace)
    with pytest.raises(MapFailed, match=r"more than 1000 bytes.*server\.max_output_bytes"):
        await chunks.__anext__()
    os.unlink(Path(workspace.output_dir) / "sparse")  # 600 bytes: within the bound
    assert await unzip_stream(storage, workspace) == {"a": b"x" * 600}


async def test_symlinks_written_by_the_map_are_left_out_of_the_output(tmp_path: Path) -> None:
    storage = local_storage(tmp_path / "payload")
    workspace = await storage.create("req-1")
    (Path(workspace.output_dir) / "result.txt").write_text("ok")
    (Path(workspace.output_dir) / "stolen").symlink_to("/etc/passwd")
    assert await unzip_stream(storage, workspace) == {"result.txt": b"ok"}


async def test_the_same_job_id_cannot_have_two_workspaces(tmp_path: Path) -> None:
    storage = local_storage(tmp_path / "payload")
    await storage.create("req-1")
    with pytest.raises(Busy, match="already in progress"):
        await storage.create("req-1")


async def test_sweep_removes_only_marked_workspaces(tmp_path: Path) -> None:
    root = tmp_path / "payload"
    storage = local_storage(root)
    left = leave_workspace(root, "crashed")
    (left / "input" / "scan.dcm").write_bytes(b"patient")
    (root / "not-ours").mkdir()
    (root / "notes.txt").write_text("an operator's file")

    assert await storage.sweep() == 1
    assert sorted(p.name for p in root.iterdir()) == ["not-ours", "notes.txt"]
    assert not (root / "crashed" / MARKER).exists()


async def test_sweep_without_a_payload_folder_is_a_no_op(tmp_path: Path) -> None:
    assert await local_storage(tmp_path / "missing").sweep() == 0


@pytest.mark.parametrize(
    ("policy", "random_method", "smooth_method"),
    [
        ("adaptive", zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED),
        ("deflate", zipfile.ZIP_DEFLATED, zipfile.ZIP_DEFLATED),
        ("stored", zipfile.ZIP_STORED, zipfile.ZIP_STORED),
    ],
)
async def test_output_compression_policy(
    tmp_path: Path, policy: str, random_method: int, smooth_method: int
) -> None:
    storage = local_storage(tmp_path / "payload", output_compression=policy)
    workspace = await storage.create("req-1")
    noise = os.urandom(300_000)  # like compressed pixel data
    ramp = bytes(range(256)) * 1200  # like smooth raw pixels
    (Path(workspace.output_dir) / "noise.dcm").write_bytes(noise)
    (Path(workspace.output_dir) / "ramp.dcm").write_bytes(ramp)
    (Path(workspace.output_dir) / "tiny.json").write_text("{}")

    body = b"".join([chunk async for chunk in storage.pack_output(workspace)])
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        assert zf.read("noise.dcm") == noise
        assert zf.read("ramp.dcm") == ramp
        assert zf.getinfo("noise.dcm").compress_type == random_method
        assert zf.getinfo("ramp.dcm").compress_type == smooth_method


async def test_a_relative_payload_folder_gives_absolute_workspaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container engine reads a relative bind-mount source as a volume name."""
    monkeypatch.chdir(tmp_path)
    storage = local_storage(Path("payload"))
    workspace = await storage.create("req-rel")
    assert Path(workspace.input_dir) == tmp_path / "payload" / "req-rel" / "input"
    await storage.delete(workspace)


@pytest.mark.parametrize("umask", [0o000, 0o077])
async def test_workspace_modes_grant_others_nothing_whatever_the_umask(
    tmp_path: Path, umask: int
) -> None:
    storage = local_storage(tmp_path / "payload")
    previous = os.umask(umask)
    try:
        workspace = await storage.create("req-modes")
        await storage.receive(workspace, chunks_of(b"PK\x05\x06" + bytes(18)))
    finally:
        os.umask(previous)
    root = Path(workspace.root)
    modes = {
        p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode)
        for p in [root, *root.iterdir()]
    }
    assert modes == {
        ".": 0o750,
        MARKER: 0o640,
        "upload.zip": 0o600,
        "input": 0o750,
        "output": 0o2770,  # the MAP's group may write; what it writes stays in the group
    }
    await storage.delete(workspace)


async def test_the_workers_setting_reaches_unpacking_and_packing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, int] = {}
    real_extract, real_zip = volume.extract_archive, volume.zip_folder

    def extract(*args: object, **options: object) -> int:
        seen["unpack"] = args[3]  # type: ignore[assignment]
        return real_extract(*args, **options)  # type: ignore[arg-type]

    def pack(*args: object, **options: object) -> object:
        seen["pack"] = options["workers"]  # type: ignore[assignment]
        return real_zip(*args, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(volume, "extract_archive", extract)
    monkeypatch.setattr(volume, "zip_folder", pack)
    storage = local_storage(tmp_path / "payload", workers=3)
    archive = make_zip(tmp_path / "in.zip", {"c.txt": b"hi"})
    workspace = await storage.create("req-1")
    await storage.receive(workspace, chunks_of(archive.read_bytes()))
    await storage.extract(workspace)
    (Path(workspace.output_dir) / "out.txt").write_text("ok")
    assert await unzip_stream(storage, workspace) == {"out.txt": b"ok"}
    assert seen == {"unpack": 3, "pack": 3}


async def test_a_failed_deletion_keeps_the_workspace_claimed_for_its_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = local_storage(tmp_path / "payload")
    workspace = await storage.create("r1")
    remove = volume.remove_workspace

    def no_descriptors(root: Path, name: str) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(volume, "remove_workspace", no_descriptors)
    with pytest.raises(OSError, match="Too many open files"):
        await storage.delete(workspace)
    monkeypatch.setattr(volume, "remove_workspace", remove)  # the fault clears
    another = local_storage(tmp_path / "payload")  # a second MIS on the same folder
    assert await another.sweep() == 0  # still held: this process retries it
    assert Path(workspace.root).is_dir()
    await storage.delete(workspace)
    assert not Path(workspace.root).exists()


@pytest.mark.parametrize("umask", [0o000, 0o077])
async def test_a_workspace_that_cannot_be_removed_is_marked_again_with_the_markers_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, umask: int
) -> None:
    storage = local_storage(tmp_path / "payload")
    workspace = await storage.create("r1")

    def busy(root: int, name: str, folder: int) -> None:
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(deletion, "_rmdir_emptying", busy)
    previous = os.umask(umask)
    try:
        with pytest.raises(OSError, match="busy"):
            await storage.delete(workspace)
    finally:
        os.umask(previous)
    marker = Path(workspace.root, MARKER)
    assert stat.S_IMODE(marker.lstat().st_mode) == WORKSPACE_MARKER_MODE  # for the next sweep
    assert sorted(os.listdir(workspace.root)) == [MARKER]
