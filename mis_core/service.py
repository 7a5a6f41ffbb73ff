"""One inference request as one operation: admit → receive → stage → run → pack → clean.

`InferenceService.infer(job_id, upload, request_id=...)` gives an `Inference` (inference.py);
iterating its
`output()` admits the request (or raises Busy at once), stores the upload as it streams in,
unpacks it, runs the MAP within its timeout and yields the output zip while it is packed. The
stages are the steps of that one generator, so they cannot run out of order.

Whatever ends the request (the last chunk taken, an error, a cancelled task, a consumer
that stops iterating), the job is terminated by its backend and the slot is released when
the generator ends. The workspace is then deleted in the background, by the task group of
`running()`, so a response ends when its last byte is written and never waits for the
deletion. A cancelled request (a client gone, a server stopping) frees its slot the same way
but deletes its files itself before its task ends: nobody waits for its answer, and a server
stopped by force runs no background tasks. Pending deletions still count: at most
2 × capacity workspaces exist, and a request admitted beyond that waits for one to go before
it makes its own (see `AdmissionGate`). A deletion that fails (a file MIS may not remove, no
descriptor free for a moment) is retried in the background, with a back-off, until it works;
meanwhile it still counts as pending, and `failing_deletions` says since when it fails.
Leaving `running()` waits for the deletions under way and ends the retries; what is left then
(or after MIS died) is swept at the next start. What the service is doing is read through
`status()`, one value, so that nothing outside reads the gate or the requests in flight.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
import attrs
from anyio.abc import TaskGroup
from loguru import logger

from mis_core.errors import BackendUnavailable, Busy
from mis_core.gate import AdmissionGate
from mis_core.inference import Inference as Inference  # the edge takes it from here
from mis_core.model import MapSpec, Workspace
from mis_core.ports import Clock, JobBackend, Storage
from mis_core.tasks import plain_task_group

RETRY_FIRST_SECONDS = 1.0  # a failed deletion is tried again after this, then twice as long
RETRY_MOST_SECONDS = 60.0  # ... up to this between tries


@attrs.frozen
class ServiceStatus:
    """What the service is doing at one moment: /v1/status, the metrics and a stopping
    server read it."""

    busy: bool  # every slot is taken: a request sent now is refused
    capacity: int  # requests run at once at most
    running: tuple[float, ...]  # the seconds each request in flight has run so far
    deleting: int  # workspaces of finished requests still being deleted
    timeout_seconds: float  # the MAP's, per request
    cleanup_failures: int  # deletion attempts that failed, retries included
    retrying_deletions: int  # workspaces whose deletion failed and is being retried

    @property
    def in_flight(self) -> int:
        return len(self.running)


class InferenceService:
    """Runs inference requests against the ports it is given; bootstrap builds one at start-up."""

    def __init__(
        self,
        *,
        map_spec: MapSpec,
        storage: Storage,
        jobs: JobBackend,
        clock: Clock,
        gate: AdmissionGate,
        on_deleted: Callable[[float], None] = lambda seconds: None,
        stuck_deletion_seconds: float,
    ) -> None:
        self.map_spec = map_spec
        self.storage = storage
        self.jobs = jobs
        self.clock = clock
        self.gate = gate
        self.stuck_deletion_seconds = stuck_deletion_seconds  # failing this long: not ready
        self.on_deleted = on_deleted  # seconds one deletion took, for metrics
        self.in_flight: dict[Inference, float] = {}  # keyed by request, not by the client's id
        self.cleanup_failures = 0  # deletion attempts that failed
        self.failing_deletions: dict[str, float] = {}  # workspace → when it first failed
        self._traced: set[str] = set()  # workspaces whose unexpected failure was traced
        self._deletions: TaskGroup | None = None
        self._stopping: anyio.Event | None = None  # set when running() ends

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Sweep what an earlier process left, then serve; leaving waits for pending deletions."""
        await self._sweep()
        self._stopping = stopping = anyio.Event()
        async with plain_task_group() as deletions:
            self._deletions = deletions
            try:
                yield
            finally:
                self._deletions = None
                stopping.set()  # retries end; the next start sweeps what they leave

    async def check_ready(self) -> None:
        """Raise BackendUnavailable, saying why, when a request sent now would fail: the
        backend cannot start jobs, the storage cannot make a workspace, or workspaces could
        not be deleted for `stuck_deletion_seconds` (their files stay, and would soon block
        new requests)."""
        await self.jobs.check()
        await self.storage.check()
        if not self.failing_deletions:
            return
        seconds = self.clock.now() - min(self.failing_deletions.values())
        if seconds >= self.stuck_deletion_seconds:
            raise BackendUnavailable(
                f"{len(self.failing_deletions)} workspace(s) of finished requests could not be "
                f"deleted for {seconds:.0f} seconds (server.stuck_deletion_seconds: "
                f"{self.stuck_deletion_seconds:g}); MIS keeps retrying. The log says why (for "
                "example files MIS's user may not remove); fix that and they go."
            )

    def status(self) -> ServiceStatus:
        """What the service is doing now."""
        now = self.clock.now()
        return ServiceStatus(
            busy=self.gate.full,
            capacity=self.gate.capacity,
            running=tuple(now - admitted for admitted in self.in_flight.values()),
            deleting=self.gate.deleting,
            timeout_seconds=self.map_spec.timeout_seconds,
            cleanup_failures=self.cleanup_failures,
            retrying_deletions=len(self.failing_deletions),
        )

    @property
    def busy(self) -> bool:
        """Every slot is taken: a request sent now is refused (cheap enough to ask per request)."""
        return self.gate.full

    def refusal(self) -> Busy:
        """What a request sent while the service is busy is told."""
        return self.gate.refusal()

    @property
    def serving(self) -> bool:
        return self._deletions is not None

    def infer(
        self, job_id: str, upload: AsyncIterable[bytes], *, request_id: str = ""
    ) -> Inference:
        """One request for the MAP on `upload` (a zip's bytes); nothing happens until iterated.

        `job_id` is MIS's own unique id of it (its workspace and job); `request_id` the
        client's, for labels (default: the job id)."""
        return Inference(self, job_id, upload, request_id or job_id)

    async def _sweep(self) -> None:
        """Jobs first, as they may still be using their workspaces (and a backend may have
        recorded them there)."""
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

    # The steps an Inference takes through the service (inference.py's Host). delete_now, the
    # one an Inference or delete_later's background task awaits, begins the deletion's steps.

    @contextmanager
    def admit(self, inference: Inference) -> Iterator[None]:
        """Hold a slot while the block runs, or raise Busy; in flight until `release`."""
        with self.gate.admit():
            self.in_flight[inference] = self.clock.now()
            yield

    async def wait_for_room(self) -> None:
        """Return when the admitted request may make its workspace (see AdmissionGate)."""
        if not self.gate.room_for_a_workspace:
            logger.info("waiting for an earlier request's workspace to be deleted")
            await self.gate.wait_for_room()

    def deletion_started(self) -> None:
        """Count the request's workspace; called before its slot is released."""
        self.gate.deletion_started()

    def delete_later(self, workspace: Workspace) -> None:
        """Hand the workspace (already counted by the gate) to the background."""
        assert self._deletions is not None  # the caller deletes it itself once serving ends
        self._deletions.start_soon(self.delete_now, workspace)  # the request's log context too

    def release(self, inference: Inference) -> None:
        """The request is over: it no longer counts in flight."""
        self.in_flight.pop(inference, None)

    async def delete_now(self, workspace: Workspace) -> None:
        """Delete the workspace; if that fails, retry in the background while serving."""
        retrying = False
        try:
            if await self._try_delete(workspace):
                return
            retrying = self._deletions is not None
            if retrying:
                self.failing_deletions[workspace.name] = self.clock.now()
                self._deletions.start_soon(self._retry, workspace)  # type: ignore[union-attr]
            else:
                logger.error("the workspace is left for the next start's sweep")
        finally:
            if not retrying:
                self._deletion_finished(workspace)

    async def _try_delete(self, workspace: Workspace) -> bool:
        """One try. Any error is caught, as a deletion must never take the service down; one
        the storage does not say it raises (a bug) comes with its traceback, the first time."""
        started = self.clock.now()
        try:
            with anyio.CancelScope(shield=True):
                await self.storage.delete(workspace)
        except Exception as exc:
            self.cleanup_failures += 1
            log = logger
            # OSError: Storage.delete's own failure, said in a line; anything else, traced once
            if not isinstance(exc, OSError) and workspace.name not in self._traced:
                self._traced.add(workspace.name)
                log = logger.opt(exception=exc)
            log.error("could not delete the workspace: {}: {}", type(exc).__name__, exc)
            return False
        logger.info("cleaned")
        self.on_deleted(self.clock.now() - started)
        return True

    def _deletion_finished(self, workspace: Workspace) -> None:
        """The workspace is gone, or left to the next start's sweep: it counts no more."""
        self.failing_deletions.pop(workspace.name, None)
        self._traced.discard(workspace.name)
        self.gate.deletion_finished()

    async def _retry(self, workspace: Workspace) -> None:
        """Try the deletion again, waiting longer each time, until it works or MIS stops."""
        delay = RETRY_FIRST_SECONDS
        tries = 1
        stopping = self._stopping
        assert stopping is not None  # retries start only while running()
        try:
            while True:
                logger.warning("retrying the deletion in {:g}s (tried {} time(s))", delay, tries)
                with self.clock.deadline(delay):
                    await stopping.wait()
                if stopping.is_set():
                    logger.error("stopping: the workspace is left for the next start's sweep")
                    return
                tries += 1
                if await self._try_delete(workspace):
                    return
                delay = min(2 * delay, RETRY_MOST_SECONDS)
        finally:
            self._deletion_finished(workspace)
