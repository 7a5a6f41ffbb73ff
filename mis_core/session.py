"""One inference request's life: admit → receive → stage → run → collect → clean.

`InferenceService.session()` admits a request and guarantees the clean-up; the
`InferenceSession` it yields moves through the stages in order. Whatever ends the request
(success, an error, a client that went away, a cancelled task) the job is terminated by its
backend, the workspace is deleted and the slot is released before the block is left.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager

import anyio
from loguru import logger

from mis_core.errors import BackendUnavailable, JobTimedOut, MapFailed, MisError
from mis_core.gate import AdmissionGate
from mis_core.model import JobOutcome, JobProgress, JobRequest, MapSpec, StageTimes, Workspace
from mis_core.ports import Clock, JobBackend, Storage

_STAGES = ("admitted", "received", "staged", "ran", "collected")


class InferenceService:
    """Runs inference sessions against the ports it is given; the app builds one at start-up."""

    def __init__(
        self,
        *,
        map_spec: MapSpec,
        storage: Storage,
        jobs: JobBackend,
        clock: Clock,
        gate: AdmissionGate,
    ) -> None:
        self.map_spec = map_spec
        self.storage = storage
        self.jobs = jobs
        self.clock = clock
        self.gate = gate
        self.in_flight: dict[str, float] = {}
        self.cleanup_failures = 0

    async def start(self) -> None:
        """Remove what an earlier, crashed process left behind: jobs first, as they may still
        be using their workspaces (and a backend may have recorded them there)."""
        try:
            jobs = await self.jobs.sweep()
        except BackendUnavailable as exc:  # serve anyway: readiness reports it meanwhile
            logger.error("could not sweep leftover jobs: {}", exc.message)
            jobs = 0
        workspaces = await self.storage.sweep()
        if workspaces or jobs:
            logger.warning(
                "swept {} leftover workspace(s) and {} leftover job(s) from an earlier run",
                workspaces,
                jobs,
            )

    @asynccontextmanager
    async def session(self, request_id: str) -> AsyncIterator[InferenceSession]:
        """Admit a request (or raise Busy) and clean up after it, whatever happens."""
        with self.gate.admit():
            self.in_flight[request_id] = self.clock.now()
            logger.info("admitted")
            try:
                workspace = await self.storage.create(request_id)
                try:
                    yield InferenceSession(self, workspace)
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._delete(workspace)
            finally:
                del self.in_flight[request_id]

    async def _delete(self, workspace: Workspace) -> None:
        try:
            await self.storage.delete(workspace)
        except Exception:
            self.cleanup_failures += 1
            logger.exception("could not delete the workspace; it will be swept at next start")
        else:
            logger.info("cleaned")


class InferenceSession:
    """One admitted request. Call the stages in order; each refuses to run out of turn."""

    def __init__(self, service: InferenceService, workspace: Workspace) -> None:
        self._service = service
        self.workspace = workspace
        self.times = StageTimes()
        self.bytes_in = 0
        self.bytes_out = 0
        self._stage = "admitted"

    def _advance(self, expected: str) -> None:
        following = _STAGES[_STAGES.index(expected) + 1]
        if self._stage != expected:
            raise RuntimeError(f"cannot move to {following!r} from {self._stage!r}")
        self._stage = following

    async def receive(self, chunks: AsyncIterable[bytes]) -> None:
        """Store the uploaded archive on the payload volume as it streams in."""
        self._advance("admitted")
        started = self._service.clock.now()
        self.bytes_in = await self._service.storage.receive(self.workspace, chunks)
        self.times.receive = self._service.clock.now() - started
        logger.info("received {} bytes in {:.3f}s", self.bytes_in, self.times.receive)

    async def stage(self) -> None:
        """Unpack the archive where the MAP will read it."""
        self._advance("received")
        started = self._service.clock.now()
        files = await self._service.storage.extract(self.workspace)
        self.times.extract = self._service.clock.now() - started
        logger.info("staged {} input file(s) in {:.3f}s", files, self.times.extract)

    async def run(self) -> None:
        """Run the MAP once within its timeout; raise JobTimedOut or MapFailed if it fails."""
        self._advance("staged")
        spec = self._service.map_spec
        request = JobRequest(
            request_id=self.workspace.request_id, map=spec, workspace=self.workspace
        )
        progress = JobProgress()
        started = self._service.clock.now()
        logger.info("job started (timeout {:g}s)", spec.timeout_seconds)
        outcome = await self._run_within_timeout(request, progress)
        self.times.job = self._service.clock.now() - started
        if outcome is None:
            logger.warning("job timed out after {:.3f}s and was terminated", self.times.job)
            waiting = (
                f" While waiting: {progress.waiting_reason}." if progress.waiting_reason else ""
            )
            raise JobTimedOut(
                f"The inference request timed out: the MAP did not finish within "
                f"{spec.timeout_seconds:g} seconds and was stopped.{waiting} Send a smaller "
                "input, or ask the administrator to raise map.timeout_seconds."
            )
        logger.info("job finished in {:.3f}s: {}", self.times.job, outcome.reason or "succeeded")
        if not outcome.succeeded:
            raise MapFailed(_failure_message(outcome))

    async def _run_within_timeout(
        self, request: JobRequest, progress: JobProgress
    ) -> JobOutcome | None:
        """The job's outcome, or None when the clock ran out first (the job is then cancelled)."""
        service = self._service
        outcome: JobOutcome | None = None
        error: MisError | None = None
        async with anyio.create_task_group() as tg:

            async def run_job() -> None:
                nonlocal outcome, error
                try:
                    outcome = await service.jobs.run(request, progress)
                except MisError as exc:  # raised plainly, not wrapped in an exception group
                    error = exc
                tg.cancel_scope.cancel()

            tg.start_soon(run_job)
            await service.clock.sleep(service.map_spec.timeout_seconds)
            tg.cancel_scope.cancel()
        if error is not None:
            raise error
        return outcome

    async def output(self) -> AsyncIterator[bytes]:
        """The MAP's output folder as a zip stream; sent while it is produced."""
        self._advance("ran")
        started = self._service.clock.now()
        async for chunk in self._service.storage.pack_output(self.workspace):
            self.bytes_out += len(chunk)
            yield chunk
        self.times.pack = self._service.clock.now() - started
        logger.info("responded with {} bytes in {:.3f}s", self.bytes_out, self.times.pack)


def _failure_message(outcome: JobOutcome) -> str:
    message = f"The MAP deployed for this inference request failed: it {outcome.reason}."
    if outcome.log_tail:
        message += " Last lines of its log:\n" + "\n".join(outcome.log_tail)
    return message
