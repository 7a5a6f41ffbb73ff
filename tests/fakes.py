"""In-memory fakes of the core's ports. Each records what was asked of it in a shared journal."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import anyio

from mis_core.errors import MisError
from mis_core.model import JobOutcome, JobProgress, JobRequest, Workspace


class FakeClock:
    """Time moves only when a test calls `advance`; sleepers wake when their deadline passes."""

    def __init__(self) -> None:
        self.time = 0.0
        self._sleepers: list[tuple[float, anyio.Event]] = []
        self._sleeper_added = anyio.Event()

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        wake = anyio.Event()
        self._sleepers.append((self.time + seconds, wake))
        self._sleeper_added.set()
        await wake.wait()

    async def until_sleeping(self) -> None:
        await self._sleeper_added.wait()

    def advance(self, seconds: float) -> None:
        self.time += seconds
        for deadline, wake in list(self._sleepers):
            if deadline <= self.time:
                wake.set()
                self._sleepers.remove((deadline, wake))


class FakeStorage:
    def __init__(self, journal: list[str], fail_at: str = "", error: MisError | None = None):
        self.journal = journal
        self.fail_at = fail_at
        self.error = error
        self.received = b""
        self.output = [b"PK-one", b"PK-two"]
        self.fail_delete = False
        self.hold_deletes: anyio.Event | None = None  # deletions wait for it when set

    def _step(self, name: str) -> None:
        self.journal.append(name)
        if self.fail_at == name:
            assert self.error is not None
            raise self.error

    async def create(self, request_id: str) -> Workspace:
        self._step("create")
        return Workspace("/ws", request_id)

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
            raise OSError("disk on fire")
        self.journal.append("deleted")

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
