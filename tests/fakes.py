"""In-memory fakes of the core's ports. Each records what was asked of it in a shared journal."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import anyio

from mis_core.errors import MisError
from mis_core.model import JobOutcome, JobProgress, JobRequest, Workspace


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


class FakeStorage:
    def __init__(self, journal: list[str], fail_at: str = "", error: MisError | None = None):
        self.journal = journal
        self.fail_at = fail_at
        self.error = error
        self.received = b""
        self.output = [b"PK-one", b"PK-two"]
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
        self.workspaces.add(job_id)
        return Workspace("/ws", job_id)

    async def receive(self, workspace: Workspace, chunks: AsyncIterable[bytes]) -> int:
        async for chunk in chunks:
            self.received += chunk
        self._step("receive")
        return len(self.received)

    async def extract(self, workspace: Workspace) -> int:
        self._step("extract")
        return 2

    async def pack_output(self, workspace: Workspace) -> AsyncIterator[bytes]:
        self._step("pack")
        for chunk in self.output:
            yield chunk

    async def delete(self, workspace: Workspace) -> None:
        self.journal.append("delete")
        if self.hold_deletes is not None:
            await self.hold_deletes.wait()
        if self.fail_delete:
            raise self.delete_error
        self.workspaces.discard(workspace.name)
        self.journal.append("deleted")

    async def check(self) -> None:
        if self.unready is not None:
            raise self.unready

    async def sweep(self) -> int:
        self.journal.append("sweep storage")
        return 0


class FakeJobBackend:
    """Succeeds, fails, or hangs until cancelled, recording when it was terminated."""

    def __init__(self, journal: list[str], outcome: JobOutcome | None = None) -> None:
        self.journal = journal
        self.outcome = outcome  # None: hang until cancelled
        self.waiting_reason = ""
        self.requests: list[JobRequest] = []
        self.started = anyio.Event()

    async def run(self, request: JobRequest, progress: JobProgress) -> JobOutcome:
        self.journal.append("run")
        self.requests.append(request)
        progress.waiting_reason = self.waiting_reason
        self.started.set()
        if self.outcome is not None:
            return self.outcome
        try:
            await anyio.sleep_forever()
        finally:
            self.journal.append("terminate")
        raise AssertionError("unreachable")

    async def check(self) -> None:
        return None

    async def sweep(self) -> int:
        self.journal.append("sweep jobs")
        return 0

    async def close(self) -> None:
        self.journal.append("close jobs")
