"""The payload volume on a local (or mounted) filesystem: one workspace folder per request.

One workspace per request, named after the request id (a Kubernetes Job mounts its input
and output folders with `subPath`); layout.py has every name and mode in it.

Nothing grants other users anything, whatever the umask (modes are set explicitly). A MAP
that runs as another user than MIS (a container image's own user) reaches the workspace
through MIS's group: the group may read the input and write the output (set-group-id, so what
it writes stays in the group).

Deletion (deletion.py) removes everything but the marker first and the marker last, so
whatever a failure leaves is still marked and swept, by this MIS or the next, once its owner
is gone.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

import anyio
from loguru import logger

from mis_adapters.open_flags import DIR_OPEN, NEW_FILE
from mis_adapters.storage.archive import extract_archive, is_disk_full, storage_full_error
from mis_adapters.storage.deletion import remove_workspace
from mis_adapters.storage.layout import (
    INPUT_FOLDER_MODE,
    OUTPUT_MODE,
    UPLOAD,
    UPLOAD_MODE,
    WORKSPACE_MODE,
    make_payload_root,
)
from mis_adapters.storage.layout import (
    WORKSPACE_MARKER as MARKER,
)
from mis_adapters.storage.limits import PayloadLimits
from mis_adapters.storage.output import output_failure
from mis_adapters.storage.ownership import Claim, Heartbeat, claim, look
from mis_adapters.storage.readiness import payload_folder_problem
from mis_adapters.zip import Compression, OutputProblem, zip_folder
from mis_core.errors import BackendUnavailable, Busy
from mis_core.model import Workspace

__all__ = ["MARKER", "LocalStorage", "PayloadLimits"]

_CHUNK = 1024 * 1024


class LocalStorage:
    def __init__(
        self,
        root: Path,
        limits: PayloadLimits,
        *,
        compression_level: int,
        compression: Compression,
        workers: int,
    ) -> None:
        self.root = root.absolute()  # bind mounts and subPaths need absolute folders
        self.limits = limits
        self.compression_level = compression_level
        self.compression = compression
        self.workers = workers  # threads unpacking and packing (server.workers; 0: auto)
        self._held = Heartbeat()
        self._janitor: threading.Timer | None = None
        self._janitor_lock = threading.Lock()

    async def create(self, job_id: str) -> Workspace:
        return await anyio.to_thread.run_sync(self._create, job_id)

    def _create(self, job_id: str) -> Workspace:
        workspace = Workspace(str(self.root), job_id)
        folder = Path(workspace.root)
        try:
            if not self.root.is_dir():
                make_payload_root(self.root)
            os.mkdir(folder, WORKSPACE_MODE)
        except FileExistsError:
            raise Busy(f"A job with id {job_id} is already in progress.") from None
        except OSError as exc:
            if is_disk_full(exc):
                raise storage_full_error() from None
            raise
        fd = os.open(folder, DIR_OPEN)
        try:
            os.fchmod(fd, WORKSPACE_MODE)  # whatever the umask
            held = claim(fd)
            try:
                os.mkdir(Workspace.INPUT, INPUT_FOLDER_MODE, dir_fd=fd)
                os.chmod(Workspace.INPUT, INPUT_FOLDER_MODE, dir_fd=fd)
                os.mkdir(Workspace.OUTPUT, OUTPUT_MODE, dir_fd=fd)
                os.chmod(Workspace.OUTPUT, OUTPUT_MODE, dir_fd=fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    remove_workspace(self.root, job_id)
                held.release()
                if is_disk_full(exc):
                    raise storage_full_error() from None
                raise
        finally:
            os.close(fd)
        self._held.add(job_id, held)
        return workspace

    async def receive(self, workspace: Workspace, chunks: AsyncIterable[bytes]) -> int:
        size = 0
        try:
            fd = os.open(
                workspace.file(UPLOAD),
                os.O_WRONLY | NEW_FILE,
                UPLOAD_MODE,
            )
            os.fchmod(fd, UPLOAD_MODE)
            with open(fd, "wb", buffering=_CHUNK) as sink:
                async for chunk in chunks:
                    size += len(chunk)
                    sink.write(chunk)
        except OSError as exc:
            if is_disk_full(exc):
                raise storage_full_error() from None
            raise
        return size

    async def extract(self, workspace: Workspace) -> int:
        archive = Path(workspace.file(UPLOAD))
        files = await anyio.to_thread.run_sync(
            extract_archive,
            archive,
            Path(workspace.input_dir),
            self.limits.for_extraction(),
            self.workers,
        )
        archive.unlink()  # the input folder now holds it; free the space for the output
        return files

    async def pack_output(self, workspace: Workspace) -> AsyncIterator[bytes]:
        """The output zip. Its first chunk comes only after the whole output was scanned, so
        a problem that can be known before sending (an unreadable file, a name MIS would not
        accept, an output over the limits) is raised before anything is sent. A large
        central directory waits in the workspace, not in memory."""
        chunks = zip_folder(
            Path(workspace.output_dir),
            self.compression_level,
            self.compression,
            workers=self.workers,
            limits=self.limits.for_output(),
            spill_to=Path(workspace.root),
        )
        try:
            while chunk := await anyio.to_thread.run_sync(next, chunks, b""):
                yield chunk
        except OutputProblem as exc:
            raise output_failure(exc) from exc
        finally:
            # Stops the packing threads (each finishes its piece, some milliseconds): on a
            # thread, so the event loop serves others meanwhile, even when cancelled.
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(chunks.close)

    async def delete(self, workspace: Workspace) -> None:
        await anyio.to_thread.run_sync(self._delete, workspace.name)

    def _delete(self, job_id: str) -> None:
        """A deletion that fails keeps the workspace claimed (its marker locked and beating):
        it is this process's to retry, not another's to sweep."""
        remove_workspace(self.root, job_id)
        held = self._held.pop(job_id)
        if held is not None:
            held.release()

    async def check(self) -> None:
        """Raise BackendUnavailable when the payload folder could not take a request now."""
        if problem := payload_folder_problem(self.root):
            raise BackendUnavailable(problem)

    async def sweep(self) -> int:
        return await anyio.to_thread.run_sync(self._sweep)

    def _sweep(self) -> int:
        """Delete the workspaces whose owners are dead; workspaces that may still belong to a
        MIS on another machine are looked at again once their lease has run out."""
        try:
            root = os.open(self.root, DIR_OPEN)
        except (FileNotFoundError, NotADirectoryError):
            return 0
        swept = 0
        retry_at: float | None = None
        try:
            with os.scandir(root) as entries:
                names = [e.name for e in entries if e.is_dir(follow_symlinks=False)]
            for name in names:
                if self._held.holds(name):
                    continue  # this process's own: never probed (see ownership.owner_alive)
                try:
                    folder = os.open(name, DIR_OPEN, dir_fd=root)
                except OSError:
                    continue
                try:
                    found = look(folder)
                finally:
                    os.close(folder)
                if found.state == "lease":
                    retry_at = min(retry_at or found.lease_end, found.lease_end)
                if found.claim is not None:
                    swept += self._remove_abandoned(name, found.claim)
        finally:
            os.close(root)
        if retry_at is not None:
            self._sweep_again_at(retry_at)
        return swept

    def _remove_abandoned(self, name: str, held: Claim) -> int:
        try:
            remove_workspace(self.root, name)
            return 1
        except OSError as exc:
            logger.error(
                "could not delete the leftover workspace {} ({}); it will be swept again",
                name,
                exc.strerror or type(exc).__name__,
            )
            return 0
        finally:
            held.release()

    def _sweep_again_at(self, when: float) -> None:
        with self._janitor_lock:
            if self._janitor is not None:
                return
            delay = max(0.0, when - time.time()) + 1.0
            self._janitor = threading.Timer(delay, self._sweep_later)
            self._janitor.daemon = True
            self._janitor.start()

    def _sweep_later(self) -> None:
        with self._janitor_lock:
            self._janitor = None
        swept = self._sweep()
        if swept:
            logger.warning(
                "swept {} workspace(s) whose owner, a MIS on another machine, stopped "
                "renewing its lease",
                swept,
            )
