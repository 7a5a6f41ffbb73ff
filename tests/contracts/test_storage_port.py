"""What the Storage port promises, held to by the fake and by the local payload volume."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.contracts.adapters import StorageUnderTest
from tests.zips import make_zip

pytestmark = pytest.mark.anyio

FILES = {"series/a.dcm": b"\x01" * 3000, "b.txt": b"hello"}


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_a_workspace_created_is_there_until_deleted(volume: StorageUnderTest) -> None:
    workspace = await volume.storage.create("req-contract")
    assert volume.exists(workspace)
    await volume.storage.delete(workspace)
    assert not volume.exists(workspace)


async def test_receive_counts_every_byte_of_the_upload(
    volume: StorageUnderTest, tmp_path: Path
) -> None:
    archive = make_zip(tmp_path / "in.zip", FILES).read_bytes()
    workspace = await volume.storage.create("req-contract")
    assert await volume.storage.receive(workspace, chunks(archive)) == len(archive)
    await volume.storage.delete(workspace)


async def test_extract_counts_the_files_it_wrote(volume: StorageUnderTest, tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "in.zip", FILES).read_bytes()
    workspace = await volume.storage.create("req-contract")
    await volume.storage.receive(workspace, chunks(archive))
    assert await volume.storage.extract(workspace) == len(FILES)
    await volume.storage.delete(workspace)


async def test_the_output_comes_as_zip_bytes(volume: StorageUnderTest) -> None:
    workspace = await volume.storage.create("req-contract")
    body = b"".join([chunk async for chunk in volume.storage.pack_output(workspace)])
    assert body.startswith(b"PK")
    await volume.storage.delete(workspace)


async def test_a_sweep_after_every_workspace_went_finds_none(volume: StorageUnderTest) -> None:
    workspace = await volume.storage.create("req-contract")
    await volume.storage.delete(workspace)
    assert await volume.storage.sweep() == 0
