"""What the core needs from the outside world. Adapters implement these; tests fake them."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

import anyio

from mis_core.model import JobOutcome, JobProgress, JobRequest, Workspace


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic clock."""
        ...

    def deadline(self, seconds: float) -> anyio.CancelScope:
        """A cancel scope that cancels what it holds `seconds` from now, on this clock.
        A scope, not a sleeping task: ending early cancels nothing and costs nothing."""
        ...


class Storage(Protocol):
    """The payload volume: one workspace per request, nothing kept after it."""

    async def create(self, job_id: str) -> Workspace:
        """Make an empty workspace, named by the job id, with its input and output folders."""
        ...

    async def receive(self, workspace: Workspace, chunks: AsyncIterable[bytes]) -> int:
        """Store the uploaded archive as it arrives; return its size. The upload limit is the
        edge's: `chunks` raises PayloadTooLarge once the request's body is past it."""
        ...

    async def extract(self, workspace: Workspace) -> int:
        """Unpack the stored archive into the input folder; return the number of files written
        (folders are not counted).

        An upload that is no zip raises InvalidInput, as does one holding an unsafe entry (a
        name reaching outside the folder, a link, a special file), refused before anything is
        written; one over the limits raises PayloadTooLarge.
        """
        ...

    def pack_output(self, workspace: Workspace) -> AsyncIterator[bytes]:
        """The output folder as zip bytes, produced while they are sent: its files, and the
        folders the MAP left empty. An empty output folder gives a valid, empty zip."""
        ...

    async def delete(self, workspace: Workspace) -> None:
        """Remove the workspace and everything in it; raise OSError when it cannot be now (a
        file MIS may not remove, no descriptor free): the service retries it."""
        ...

    async def check(self) -> None:
        """Raise BackendUnavailable when a workspace could not be made now (no room, no folder)."""
        ...

    async def sweep(self) -> int:
        """Remove the workspaces an earlier process left (never one this process holds);
        return how many."""
        ...


class JobBackend(Protocol):
    """Runs the MAP once per request, on the request's workspace: it reads the input folder and
    writes the output folder. Cancelling `run` must terminate the job before returning, and
    the cancellation goes on (no outcome)."""

    async def run(self, request: JobRequest, progress: JobProgress) -> JobOutcome:
        """How the MAP ended: a failure with its reason, exit code and last lines of its log."""
        ...

    async def check(self) -> None:
        """Raise BackendUnavailable when jobs cannot be started now."""
        ...

    async def sweep(self) -> int:
        """Terminate jobs left by an earlier process; return how many."""
        ...

    async def close(self) -> None:
        """Release connections at shutdown."""
        ...


class WarmUp(Protocol):
    """Optional beside JobBackend: get ready before the first request (a container backend
    pulls the MAP's image), so that no request's timeout pays for it."""

    async def warm_up(self, request: JobRequest) -> None: ...
