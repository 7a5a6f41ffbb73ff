"""One inference request through the service: admit → receive → stage → run → pack.

The stages are the steps of one generator, `Inference.output()`, so they cannot run out of
order; the service (service.py) holds what outlives a request: the gate, the ports and the
deletions in the background. Apart from it so that each of the two reads on its own.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable
from typing import TYPE_CHECKING

import anyio
from loguru import logger

from mis_core.errors import JobTimedOut, MapFailed
from mis_core.model import JobOutcome, JobProgress, JobRequest, StageTimes, Workspace

if TYPE_CHECKING:
    from mis_core.service import InferenceService


class Inference:
    """One request through the service; its times, counts and image id are for the edge."""

    def __init__(
        self,
        service: InferenceService,
        job_id: str,
        upload: AsyncIterable[bytes],
        request_id: str,
    ) -> None:
        self._service = service
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
        service = self._service
        if not service.serving:
            raise RuntimeError("requests are served only inside InferenceService.running()")
        workspace: Workspace | None = None
        cancelled = False
        try:
            with service.gate.admit():
                service.in_flight[self] = service.clock.now()
                logger.info("admitted")
                try:
                    if not service.gate.room_for_a_workspace:
                        logger.info("waiting for an earlier request's workspace to be deleted")
                        await service.gate.wait_for_room()
                    workspace = await service.storage.create(self.job_id)
                    await self._receive(workspace)
                    await self._stage(workspace)
                    await self._run(workspace)
                    started = service.clock.now()
                    async for chunk in service.storage.pack_output(workspace):
                        self.bytes_out += len(chunk)
                        yield chunk
                    self.times.pack = service.clock.now() - started
                    logger.info(
                        "responded with {} bytes in {:.3f}s", self.bytes_out, self.times.pack
                    )
                except anyio.get_cancelled_exc_class():
                    cancelled = True
                    raise
                finally:
                    if workspace is not None:  # counted before the slot is released
                        service.gate.deletion_started()
            # the slot is free: the next request is admitted while this one's files go
        finally:
            try:
                if workspace is not None and (cancelled or not service.serving):
                    # Cancelled (a client gone, a server stopping): nobody waits for an answer,
                    # and a stopping server may run no background deletions any more.
                    await service._delete(workspace)
                elif workspace is not None:
                    service._delete_later(workspace)
            finally:
                service.in_flight.pop(self, None)

    async def _receive(self, workspace: Workspace) -> None:
        clock = self._service.clock
        started = clock.now()
        self.bytes_in = await self._service.storage.receive(workspace, self._upload)
        self.times.receive = clock.now() - started
        logger.info("received {} bytes in {:.3f}s", self.bytes_in, self.times.receive)

    async def _stage(self, workspace: Workspace) -> None:
        clock = self._service.clock
        started = clock.now()
        self.files_in = await self._service.storage.extract(workspace)
        self.times.extract = clock.now() - started
        logger.info("staged {} input file(s) in {:.3f}s", self.files_in, self.times.extract)

    async def _run(self, workspace: Workspace) -> None:
        """Run the MAP once within its timeout; raise JobTimedOut or MapFailed if it fails."""
        service = self._service
        spec = service.map_spec
        request = JobRequest(self.job_id, spec, workspace, request_id=self.request_id)
        progress = JobProgress()
        started = service.clock.now()
        logger.info("job started (timeout {:g}s)", spec.timeout_seconds)
        outcome = await self._within_timeout(request, progress)
        self.times.job = service.clock.now() - started
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
        service = self._service
        with service.clock.deadline(service.map_spec.timeout_seconds):
            return await service.jobs.run(request, progress)
        return None


def _failure_message(outcome: JobOutcome) -> str:
    message = f"The MAP deployed for this inference request failed: it {outcome.reason}."
    if outcome.log_tail:
        message += " Last lines of its log:\n" + "\n".join(outcome.log_tail)
    return message
