"""The payload volume on a local (or mounted) filesystem: one workspace folder per request.

Layout of a workspace, named after the request id (a Kubernetes Job mounts the two folders
with `subPath`):

    <payload_dir>/<request-id>/.mis-workspace   marker: only marked folders are ever swept
    <payload_dir>/<request-id>/upload.zip       the archive as received
    <payload_dir>/<request-id>/input/           what the MAP reads
    <payload_dir>/<request-id>/output/          what the MAP writes
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import anyio
import attrs

from mis_adapters.storage.archive import (
    ExtractLimits,
    extract_archive,
    is_disk_full,
    storage_full_error,
)
from mis_adapters.storage.zipwriter import COMPRESSION_POLICIES, zip_folder
from mis_core.errors import Busy, PayloadTooLarge
from mis_core.model import Workspace

MARKER = ".mis-workspace"
_CHUNK = 1024 * 1024
UPLOAD = "upload.zip"


@attrs.frozen
class PayloadLimits:
    max_upload_bytes: int
    max_extracted_bytes: int
    max_entries: int
    max_compression_ratio: float

    def for_extraction(self) -> ExtractLimits:
        return ExtractLimits(
            max_extracted_bytes=self.max_extracted_bytes,
            max_entries=self.max_entries,
            max_compression_ratio=self.max_compression_ratio,
        )


class LocalStorage:
    def __init__(
        self,
        root: Path,
        limits: PayloadLimits,
        compression_level: int = 1,
        compression: str = "adaptive",
    ) -> None:
        if compression not in COMPRESSION_POLICIES:
            raise ValueError(f"compression must be one of {COMPRESSION_POLICIES}")
        self.root = root.absolute()  # bind mounts and subPaths need absolute folders
        self.limits = limits
        self.compression_level = compression_level
        self.compression = compression

    async def create(self, request_id: str) -> Workspace:
        folder = self.root / request_id
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            folder.mkdir(mode=0o755)
        except FileExistsError:
            raise Busy(f"A request with id {request_id} is already in progress.") from None
        except OSError as exc:
            if is_disk_full(exc):
                raise storage_full_error() from None
            raise
        workspace = Workspace(
            request_id=request_id,
            root=str(folder),
            input_dir=str(folder / "input"),
            output_dir=str(folder / "output"),
        )
        try:
            (folder / MARKER).touch()
            Path(workspace.input_dir).mkdir(mode=0o755)
            Path(workspace.output_dir).mkdir(mode=0o777)
            os.chmod(workspace.output_dir, 0o777)  # the MAP may run as another user
        except OSError as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if is_disk_full(exc):
                raise storage_full_error() from None
            raise
        return workspace

    async def receive(self, workspace: Workspace, chunks: AsyncIterable[bytes]) -> int:
        limit = self.limits.max_upload_bytes
        size = 0
        try:
            with open(Path(workspace.root) / UPLOAD, "xb", buffering=_CHUNK) as sink:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise upload_too_large(limit)
                    sink.write(chunk)
        except OSError as exc:
            if is_disk_full(exc):
                raise storage_full_error() from None
            raise
        return size

    async def extract(self, workspace: Workspace) -> int:
        archive = Path(workspace.root) / UPLOAD
        files = await anyio.to_thread.run_sync(
            extract_archive, archive, Path(workspace.input_dir), self.limits.for_extraction()
        )
        archive.unlink()  # the input folder now holds it; free the space for the output
        return files

    async def pack_output(self, workspace: Workspace) -> AsyncIterator[bytes]:
        chunks = zip_folder(Path(workspace.output_dir), self.compression_level, self.compression)
        while chunk := await anyio.to_thread.run_sync(next, chunks, b""):
            yield chunk

    async def delete(self, workspace: Workspace) -> None:
        await anyio.to_thread.run_sync(shutil.rmtree, workspace.root)

    async def sweep(self) -> int:
        if not self.root.is_dir():
            return 0
        leftovers = [p for p in self.root.iterdir() if (p / MARKER).exists()]
        for folder in leftovers:
            await anyio.to_thread.run_sync(shutil.rmtree, folder)
        return len(leftovers)


def upload_too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The upload is larger than this service accepts ({limit} bytes, server.max_upload_bytes)."
    )
