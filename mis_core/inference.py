"""One inference request through the service: admit → receive → stage → run → pack.

The stages are the steps of one generator, `Inference.output()`, so they cannot run out of
order; the service (service.py) holds what outlives a request: the gate, the ports and the
deletions in the background. Apart from it so that each of the two reads on its own, and the
two meet at `Host`'s named steps (a slot, room for a workspace, its deletion), not at the
service's insides.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from contextlib import AbstractContextManager
from typing import Protocol

import anyio
from loguru import logger

from mis_core.errors import JobTimedOut, MapFailed
from mis_core.model import JobOutcome, JobProgress, JobRequest, MapSpec, StageTimes, Workspace
from mis_core.ports import Clock, JobBackend, Storage


class Host(Protocol):
    """What an Inference asks of the service that runs it (InferenceService): the ports, and
    the steps where a request's life meets the service's, called in this order (a workspace
    is deleted now or later, not both)."""

    @property
    def map_spec(self) -> MapSpec: ...
    @property
    def storage(self) -> Storage: ...
    @property
    def jobs(self) -> JobBackend: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def serving(self) -> bool:
        """Inside `running()`: requests are served, and deletions may go to the background."""

    def admit(self, inference: Inference) -> AbstractContextManager[None]:
        """Hold a slot while the block runs, or raise Busy at once; the request counts as in
        flight from here until `release`."""

    async def wait_for_room(self) -> None:
        """Return when the admitted request may make its workspace (at once, unless deletions
        of earlier ones fell behind)."""

    def deletion_started(self) -> None:
        """Count the request's workspace as pending deletion, while its slot is still held."""

    async def delete_now(self, workspace: Workspace) -> None:
        """Delete the counted workspace before returning (retrying in the background, if it
        fails, while serving)."""

    def delete_later(self, workspace: Workspace) -> None:
        """Hand the counted workspace to the background to delete."""

    def release(self, inference: Inference) -> None:
        """The request is over: it no longer counts as in flight."""


class Inference:
    """One request through the service; its times, counts and image id are for the edge."""

    def __init__(
        self,
        host: Host,
        job_id: str,
        upload: AsyncIterable[bytes],
        request_id: str,
    ) -> None:
        self._host = host
        self.job_id = job_id
        self.request_id = request_id
        self._upload = upload
        self.times = StageTimes()
        self.bytes_in = 0
        self.bytes_out = 0
        self.files_in: int | None = None  # files unpacked from the upload
        self.image_id = ""  # the MAP's image as it ran, when the backend knows it

    async def output(self) -> AsyncGenerator[bytes, None]:
        """The output zip, produced while it is sent. Close it (`contextlib.aclosing`) if you
        stop early: the job is stopped and the workspace handed to deletion when it closes."""
        host = self._host
        if not host.serving:
            raise RuntimeError("requests are served only inside InferenceService.running()")
        workspace: Workspace | None = None
        cancelled = False
        try:
            with host.admit(self):
                logger.info("admitted")
                try:
                    await host.wait_for_room()
                    workspace = await host.storage.create(self.job_id)
                    await self._receive(workspace)
                    await self._stage(workspace)
                    await self._run(workspace)
                    started = host.clock.now()
                    async for chunk in host.storage.pack_output(workspace):
                        self.bytes_out += len(chunk)
                        yield chunk
                    self.times.pack = host.clock.now() - started
                    logger.info(
                        "responded with {} bytes in {:.3f}s", self.bytes_out, self.times.pack
                    )
                except anyio.get_cancelled_exc_class():
                    cancelled = True
                    raise
                finally:
                    if workspace is not None:  # counted before the slot is released
                        host.deletion_started()
            # the slot is free: the next request is admitted while this one's files go
        finally:
            try:
                if workspace is not None and (cancelled or not host.serving):
                    # Cancelled (a client gone, a server stopping): nobody waits for an answer,
                    # and a stopping server may run no background deletions any more.
                    await host.delete_now(workspace)
                elif workspace is not None:
                    host.delete_later(workspace)
            finally:
                host.release(self)

    async def _receive(self, workspace: Workspace) -> None:
        clock = self._host.clock
        started = clock.now()
        self.bytes_in = await self._host.storage.receive(workspace, self._upload)
        self.times.receive = clock.now() - started
        logger.info("received {} bytes in {:.3f}s", self.bytes_in, self.times.receive)

    async def _stage(self, workspace: Workspace) -> None:
        clock = self._host.clock
        started = clock.now()
        self.files_in = await self._host.storage.extract(workspace)
        self.times.extract = clock.now() - started
        logger.info("staged {} input file(s) in {:.3f}s", self.files_in, self.times.extract)

    async def _run(self, workspace: Workspace) -> None:
        """Run the MAP once within its timeout; raise JobTimedOut or MapFailed if it fails."""
        host = self._host
        spec = host.map_spec
        request = JobRequest(self.job_id, spec, workspace, request_id=self.request_id)
        progress = JobProgress()
        started = host.clock.now()
        logger.info("job started (timeout {:g}s)", spec.timeout_seconds)
        outcome = await self._within_timeout(request, progress)
        self.times.job = host.clock.now() - started
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
        self.image_id = outcome.image_id
        logger.info("job finished in {:.3f}s: {}", self.times.job, outcome.reason or "succeeded")
        if not outcome.succeeded:
            raise MapFailed(_failure_message(outcome))

    async def _within_timeout(
        self, request: JobRequest, progress: JobProgress
    ) -> JobOutcome | None:
        """The job's outcome, or None when the clock ran out first (the job is then cancelled)."""
        host = self._host
        with host.clock.deadline(host.map_spec.timeout_seconds):
            return await host.jobs.run(request, progress)
        return None


def _failure_message(outcome: JobOutcome) -> str:
    message = f"The MAP deployed for this inference request failed: it {outcome.reason}."
    if outcome.log_tail:
        message += " Last lines of its log:\n" + "\n".join(outcome.log_tail)
    return message
