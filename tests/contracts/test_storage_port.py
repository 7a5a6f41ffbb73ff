"""What the Storage port promises, held to by the fake and by the local payload volume."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mis_core.errors import BackendUnavailable, InvalidInput, PayloadTooLarge
from mis_core.model import Workspace
from tests.contracts.adapters import StorageUnderTest
from tests.zips import make_symlink_zip, make_zip, unzipped, zip_bytes

pytestmark = pytest.mark.anyio

# Three files, two in a folder the archive names too, and an empty folder. The scan does not
# compress: the archive comes in several chunks.
STUDY = {
    "series/": b"",
    "series/IM0001.dcm": random.Random(7).randbytes(5000),
    "series/IM0002.dcm": b"\x01" * 3000,
    "notes.txt": b"hello",
    "empty/": b"",
}
STUDY_FILES = 3
STUDY_BYTES = sum(len(data) for data in STUDY.values())
UNPACKED = {name: data for name, data in STUDY.items() if name != "series/"}  # as the MAP sees it
RESULTS = {"seg/mask.nii": b"\x02" * 2000, "report.json": b"{}", "nothing-found/": b""}


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def received(volume: StorageUnderTest, archive: bytes) -> Workspace:
    workspace = await volume.storage.create("req-contract")
    await volume.storage.receive(workspace, chunks(archive))
    return workspace


async def packed(volume: StorageUnderTest, workspace: Workspace) -> bytes:
    return b"".join([chunk async for chunk in volume.storage.pack_output(workspace)])


async def test_a_workspace_is_made_empty_and_is_there_until_deleted(
    volume: StorageUnderTest,
) -> None:
    workspace = await volume.storage.create("req-contract")
    assert volume.exists(workspace)
    assert volume.input(workspace) == {}
    await volume.storage.delete(workspace)
    assert not volume.exists(workspace)


async def test_receive_counts_every_byte_of_the_upload(volume: StorageUnderTest) -> None:
    archive = zip_bytes(STUDY)
    workspace = await volume.storage.create("req-contract")
    assert await volume.storage.receive(workspace, chunks(archive)) == len(archive)


async def test_extract_unpacks_what_was_received_and_counts_its_files(
    volume: StorageUnderTest,
) -> None:
    workspace = await received(volume, zip_bytes(STUDY))
    assert await volume.storage.extract(workspace) == STUDY_FILES
    assert volume.input(workspace) == UNPACKED


async def test_an_empty_archive_gives_an_empty_input(volume: StorageUnderTest) -> None:
    workspace = await received(volume, zip_bytes({}))
    assert await volume.storage.extract(workspace) == 0
    assert volume.input(workspace) == {}


@pytest.mark.parametrize(
    "hostile",
    ["not a zip", "../escape.txt", "a/../../escape.txt", "/etc/cron.d/evil", "C:/evil", "a link"],
)
async def test_an_upload_that_is_no_zip_or_unsafe_is_invalid_input_and_nothing_is_unpacked(
    volume: StorageUnderTest, tmp_path: Path, hostile: str
) -> None:
    if hostile == "not a zip":
        archive = b"these are not the bytes of a zip archive"
    elif hostile == "a link":
        archive = make_symlink_zip(tmp_path / "in.zip").read_bytes()
    else:
        archive = make_zip(tmp_path / "in.zip", {"fine.txt": b"ok", hostile: b"evil"}).read_bytes()
    workspace = await received(volume, archive)
    with pytest.raises(InvalidInput):
        await volume.storage.extract(workspace)
    assert volume.input(workspace) == {}


async def test_the_output_is_a_zip_of_exactly_what_the_map_wrote(volume: StorageUnderTest) -> None:
    workspace = await volume.storage.create("req-contract")
    volume.write_output(workspace, RESULTS)
    assert unzipped(await packed(volume, workspace)) == RESULTS


async def test_an_empty_output_is_a_valid_empty_zip(volume: StorageUnderTest) -> None:
    workspace = await volume.storage.create("req-contract")
    assert unzipped(await packed(volume, workspace)) == {}


async def test_delete_removes_the_whole_workspace(volume: StorageUnderTest) -> None:
    workspace = await received(volume, zip_bytes(STUDY))
    await volume.storage.extract(workspace)
    volume.write_output(workspace, RESULTS)
    await volume.storage.delete(workspace)
    assert not volume.exists(workspace)


async def test_sweep_removes_and_counts_what_an_earlier_process_left_and_only_that(
    volume: StorageUnderTest,
) -> None:
    left = [await volume.leave("crashed-1"), await volume.leave("crashed-2")]
    ours = await volume.storage.create("req-contract")
    gone = await volume.storage.create("req-done")
    await volume.storage.delete(gone)
    assert await volume.storage.sweep() == len(left)
    assert not any(volume.exists(workspace) for workspace in left)
    assert volume.exists(ours)  # a workspace in use is this process's own
    assert await volume.storage.sweep() == 0


async def test_a_volume_that_can_take_a_workspace_passes_its_check(
    volume: StorageUnderTest,
) -> None:
    await volume.storage.check()


async def test_a_volume_that_cannot_take_a_workspace_fails_its_check(
    volume: StorageUnderTest,
) -> None:
    volume.unready()
    with pytest.raises(BackendUnavailable):
        await volume.storage.check()


@pytest.mark.parametrize(
    ("setting", "value"),
    [("max_extracted_bytes", STUDY_BYTES - 1), ("max_entries", len(STUDY) - 1)],
)
async def test_an_archive_over_the_limits_is_payload_too_large_and_nothing_is_unpacked(
    volume: StorageUnderTest, setting: str, value: int
) -> None:
    volume.limit(setting, value)  # the study is one over it
    workspace = await received(volume, zip_bytes(STUDY))
    with pytest.raises(PayloadTooLarge):
        await volume.storage.extract(workspace)
    assert volume.input(workspace) == {}


async def test_a_workspace_that_cannot_be_deleted_now_raises_oserror_and_waits_for_the_retry(
    volume: StorageUnderTest,
) -> None:
    workspace = await received(volume, zip_bytes(STUDY))
    await volume.storage.extract(workspace)
    volume.write_output(workspace, RESULTS)
    with volume.undeletable(workspace):
        with pytest.raises(OSError):  # noqa: PT011 - the port says OSError, of any kind
            await volume.storage.delete(workspace)
        assert volume.exists(workspace)
    assert await volume.storage.sweep() == 0  # still this process's: its retry's to delete
    assert volume.exists(workspace)
    await volume.storage.delete(workspace)  # the service's retry, once the cause is gone
    assert not volume.exists(workspace)
