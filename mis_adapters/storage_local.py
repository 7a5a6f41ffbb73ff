"""The payload volume on a local (or mounted) filesystem: one workspace folder per request.

Layout of a workspace, named after the request id (a Kubernetes Job mounts the two folders
with `subPath`):

    <payload_dir>/<request-id>/.mis-workspace   marker: only marked folders are ever swept
    <payload_dir>/<request-id>/upload.zip       the archive as received
    <payload_dir>/<request-id>/input/           what the MAP reads
    <payload_dir>/<request-id>/output/          what the MAP writes
"""

from __future__ import annotations

import datetime
import os
import shutil
import stat
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from pathlib import Path

import anyio
import attrs
from loguru import logger
from stream_zip import NO_COMPRESSION_32, NO_COMPRESSION_64, ZIP_AUTO, Method, stream_zip

from mis_adapters.archive import ExtractLimits, extract_archive, is_disk_full, storage_full_error
from mis_core.errors import Busy, PayloadTooLarge
from mis_core.model import Workspace

MARKER = ".mis-workspace"
UPLOAD = "upload.zip"
_CHUNK = 1024 * 1024
_READ = 64 * 1024
_ZIP_ENTRY_MODE = stat.S_IFREG | 0o644
_ZIP_DIR_MODE = stat.S_IFDIR | 0o755
COMPRESSION_POLICIES = ("adaptive", "deflate", "stored")
_SAMPLE = 16 * 1024  # bytes of a file's middle that decide whether it compresses
_WORTH_IT = 0.9  # deflate when the sample shrinks below this fraction
_ZIP32_LIMIT = 0xFFFFFFFF


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


def zip_folder(folder: Path, level: int, compression: str = "adaptive") -> Iterator[bytes]:
    """Zip bytes of `folder` in chunks of about 1 MiB, built lazily as the caller pulls them.

    Only regular files and folders are included: a symbolic link written by the MAP could
    otherwise smuggle a file of the host into the response.

    `compression`: "deflate" every file at `level`; "stored" (no compression); "adaptive"
    deflates only files whose middle compresses, since deflating already-compressed pixels
    costs ~25 ms per MB here and saves nothing.
    """
    members = _members(folder, level, compression)
    compress = lambda: zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)  # noqa: E731
    return _rechunk(stream_zip(members, chunk_size=_READ, get_compressobj=compress))


def _members(folder: Path, level: int, compression: str) -> Iterator[tuple]:  # type: ignore[type-arg]
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        here = Path(dirpath)
        relative = here.relative_to(folder).as_posix()
        if relative != "." and not dirnames and not filenames:
            yield relative + "/", _mtime(os.lstat(here)), _ZIP_DIR_MODE, ZIP_AUTO(0), ()
        for name in sorted(filenames):
            path = here / name
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                logger.warning("left a symbolic link or special file out of the output zip")
                continue
            arcname = path.relative_to(folder).as_posix()
            method = _method(path, info.st_size, level, compression)
            yield arcname, _mtime(info), _ZIP_ENTRY_MODE, method, _read(path)


def _method(path: Path, size: int, level: int, compression: str) -> Method:
    if compression == "deflate" or (compression == "adaptive" and _compresses(path, size)):
        return ZIP_AUTO(size, level=level)
    crc = 0
    for chunk in _read(path):  # stored entries need their CRC up front: one more (cached) read
        crc = zlib.crc32(chunk, crc)
    return (NO_COMPRESSION_32 if size <= _ZIP32_LIMIT else NO_COMPRESSION_64)(size, crc)


def _compresses(path: Path, size: int) -> bool:
    """Whether deflate pays: judged on a sample from the file's middle (past any header)."""
    if size < 4 * _SAMPLE:
        return True  # small files cost little either way
    with open(path, "rb") as source:
        source.seek(size // 2)
        sample = source.read(_SAMPLE)
    return len(zlib.compress(sample, 1)) < _WORTH_IT * len(sample)


def _mtime(info: os.stat_result) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(info.st_mtime)


def _read(path: Path) -> Iterator[bytes]:
    """64 KiB at a time: the compressor then hands out its first bytes after ~1 ms, not after
    a whole megabyte (20 ms at level 1)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as source:
        while chunk := source.read(_READ):
            yield chunk


def _rechunk(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Merge small pieces so each hop between the worker thread and the event loop moves up to
    1 MiB; the first pieces go out small, so the response starts as soon as the MAP is done."""
    buffer = bytearray()
    threshold = 16 * 1024
    for chunk in chunks:
        buffer += chunk
        if len(buffer) >= threshold:
            yield bytes(buffer)
            buffer.clear()
            threshold = min(threshold * 4, _CHUNK)
    if buffer:
        yield bytes(buffer)
