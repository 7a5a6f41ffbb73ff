"""In-memory fakes of the core's ports. Each records what was asked of it in a shared journal.

The storage and the job backend share a MemoryDisk, as the real adapters share the payload
folder: an upload is really unpacked, the MAP really reads its input and writes its output,
and the output is really packed, so a core test sees real entries. tests/contracts holds the
fakes to what the real adapters do.
"""

from __future__ import annotations

import io
import posixpath
import stat
import zipfile
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import NoReturn

import anyio

from mis_core.errors import InvalidInput, MisError
from mis_core.model import JobOutcome, JobProgress, JobRequest, Workspace
from tests.zips import zip_bytes

UPLOAD = "upload.zip"  # the archive as received, in the workspace until it is unpacked


class FakeClock:
    """Time moves only when a test calls `advance`; deadlines cancel when they pass."""

    def __init__(self) -> None:
        self.time = 0.0
        self._deadlines: list[tuple[float, anyio.CancelScope]] = []
        self._deadline_set = anyio.Event()

    def now(self) -> float:
        return self.time

    def deadline(self, seconds: float) -> anyio.CancelScope:
        scope = anyio.CancelScope()
        self._deadlines.append((self.time + seconds, scope))
        self._deadline_set.set()
        return scope

    async def until_timed(self) -> None:
        """Until something has set a deadline."""
        await self._deadline_set.wait()

    def advance(self, seconds: float) -> None:
        self.time += seconds
        for deadline, scope in list(self._deadlines):
            if deadline <= self.time:
                scope.cancel()
                self._deadlines.remove((deadline, scope))


class MemoryDisk:
    """A file system in memory: each file's bytes by its absolute path. A path ending in '/'
    is a folder (one that holds something needs no path of its own), as in a zip."""

    def __init__(self) -> None:
        self.paths: dict[str, bytes] = {}

    def write(self, folder: str, files: Mapping[str, bytes]) -> None:
        """Put `files` (folders too, their names ending in '/') in `folder`."""
        for name, data in files.items():
            self.paths[posixpath.join(folder, name)] = data

    def read(self, folder: str) -> dict[str, bytes]:
        """What `folder` holds, by relative names: its files and its empty folders."""
        prefix = folder + "/"
        found = {
            path.removeprefix(prefix): data
            for path, data in self.paths.items()
            if path.startswith(prefix) and path != prefix
        }
        return {
            name: data
            for name, data in found.items()
            if not name.endswith("/") or not any(o.startswith(name) and o != name for o in found)
        }

    def holds(self, folder: str) -> bool:
        """Whether anything of `folder` is there."""
        return any(path.startswith(folder + "/") for path in self.paths)

    def remove(self, folder: str) -> None:
        for path in [p for p in self.paths if p.startswith(folder + "/")]:
            del self.paths[path]

    def folders(self, parent: str) -> set[str]:
        """The names of the folders directly in `parent`."""
        prefix = parent + "/"
        return {
            path.removeprefix(prefix).split("/")[0]
            for path in self.paths
            if path.startswith(prefix) and "/" in path.removeprefix(prefix)
        }


def unpack(archive: bytes) -> dict[str, bytes]:
    """A zip's entries by name, refusing what the real reader refuses most plainly: what is
    no zip, unsafe names, links and special files, a name twice, damaged data."""
    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as zf:
            files: dict[str, bytes] = {}
            for info in zf.infolist():
                if problem := _refusal(info, files):
                    raise InvalidInput(f"The upload cannot be unpacked: {problem}.")
                files[info.filename] = b"" if info.is_dir() else zf.read(info)
            return files
    except (zipfile.BadZipFile, RuntimeError, NotImplementedError) as exc:
        raise InvalidInput(f"The upload is not a readable zip archive ({exc}).") from None


def _refusal(info: zipfile.ZipInfo, unpacked: Mapping[str, bytes]) -> str:
    name = info.filename
    parts = name.removesuffix("/").split("/")
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0: no type given, a plain file
    if name.startswith("/") or "\\" in name or ":" in parts[0]:
        return "a name that is not relative"
    if any(part in ("", ".", "..") for part in parts):
        return "a name with an empty, '.' or '..' component"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "a link or a special file"
    return "a name twice" if name in unpacked else ""


class FakeStorage:
    """The payload volume on a MemoryDisk; `fail_at` a step fails it with `error`."""

    ROOT = "/ws"
    CHUNK = 1024  # the output goes out in pieces of this size, as it would be sent

    def __init__(
        self,
        journal: list[str],
        fail_at: str = "",
        error: MisError | None = None,
        disk: MemoryDisk | None = None,
    ):
        self.journal = journal
        self.fail_at = fail_at
        self.error = error
        self.disk = MemoryDisk() if disk is None else disk
        self.fail_delete = False
        self.delete_error: Exception = OSError("disk on fire")  # what a failing delete raises
        self.hold_deletes: anyio.Event | None = None  # deletions wait for it when set
        self.unready: MisError | None = None  # what check() raises
        self.workspaces: set[str] = set()  # created and not yet deleted

    def _step(self, name: str) -> None:
        self.journal.append(name)
        if self.fail_at == name:
            assert self.error is not None
            raise self.error

    async def create(self, job_id: str) -> Workspace:
        self._step("create")
        workspace = Workspace(self.ROOT, job_id)
        self.disk.write(workspace.root, {f"{Workspace.INPUT}/": b"", f"{Workspace.OUTPUT}/": b""})
        self.workspaces.add(job_id)
        return workspace

    async def receive(self, workspace: Workspace, chunks: AsyncIterable[bytes]) -> int:
        received = bytearray()
        async for chunk in chunks:
            received += chunk
        self._step("receive")
        self.disk.write(workspace.root, {UPLOAD: bytes(received)})
        return len(received)

    async def extract(self, workspace: Workspace) -> int:
        self._step("extract")
        entries = unpack(self.disk.paths.pop(workspace.file(UPLOAD)))  # unpacked: it goes
        self.disk.write(workspace.input_dir, entries)
        return sum(not name.endswith("/") for name in entries)

    async def pack_output(self, workspace: Workspace) -> AsyncIterator[bytes]:
        self._step("pack")
        archive = zip_bytes(self.disk.read(workspace.output_dir))
        for start in range(0, len(archive), self.CHUNK):
            yield archive[start : start + self.CHUNK]

    async def delete(self, workspace: Workspace) -> None:
        self.journal.append("delete")
        if self.hold_deletes is not None:
            await self.hold_deletes.wait()
        if self.fail_delete:
            raise self.delete_error
        self.disk.remove(workspace.root)
        self.workspaces.discard(workspace.name)
        self.journal.append("deleted")

    async def check(self) -> None:
        if self.unready is not None:
            raise self.unready

    async def sweep(self) -> int:
        """The workspaces on the disk that this storage did not make (an earlier one did)."""
        self.journal.append("sweep storage")
        left = self.disk.folders(self.ROOT) - self.workspaces
        for name in left:
            self.disk.remove(posixpath.join(self.ROOT, name))
        return len(left)


class FakeJobBackend:
    """Its MAP copies its input into its output, then ends as `outcome` says; with no
    outcome, it runs until cancelled, recording when it was terminated."""

    def __init__(
        self, journal: list[str], outcome: JobOutcome | None = None, disk: MemoryDisk | None = None
    ) -> None:
        self.journal = journal
        self.outcome = outcome  # None: hang until cancelled
        self.disk = MemoryDisk() if disk is None else disk  # the storage's, to see its files
        self.waiting_reason = ""
        self.requests: list[JobRequest] = []
        self.started = anyio.Event()
        self.unready: MisError | None = None  # what check() raises
        self.leftovers: set[str] = set()  # ids of jobs an earlier process left running

    async def run(self, request: JobRequest, progress: JobProgress) -> JobOutcome:
        self.journal.append("run")
        self.requests.append(request)
        progress.waiting_reason = self.waiting_reason
        self.started.set()
        if self.outcome is None:
            await self._until_terminated()
        workspace = request.workspace
        self.disk.write(workspace.output_dir, self.disk.read(workspace.input_dir))
        return self.outcome

    async def _until_terminated(self) -> NoReturn:
        try:
            await anyio.sleep_forever()
        finally:
            self.journal.append("terminate")
        raise AssertionError("unreachable")

    async def check(self) -> None:
        if self.unready is not None:
            raise self.unready

    async def sweep(self) -> int:
        self.journal.append("sweep jobs")
        terminated = len(self.leftovers)
        self.leftovers.clear()
        return terminated

    async def close(self) -> None:
        self.journal.append("close jobs")
