"""Helpers for driving the service against the fakes: build it, run it, send one request."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager

import anyio

from mis_core.gate import AdmissionGate
from mis_core.model import JobOutcome, MapSpec
from mis_core.service import InferenceService
from tests.fakes import FakeClock, FakeJobBackend, FakeStorage
from tests.zips import zip_bytes

SUCCESS = JobOutcome(succeeded=True, exit_code=0)
STAGES = ["create", "receive", "extract", "run", "pack"]
# What every request sends; the fakes' MAP sends it back. The scan does not compress, so the
# output comes in several pieces.
STUDY = {"series/IM0001.dcm": random.Random(7).randbytes(4000), "notes.txt": b"spleen, please"}
ARCHIVE = zip_bytes(STUDY)


def make_service(
    storage: FakeStorage, jobs: FakeJobBackend, clock: FakeClock | None = None, capacity: int = 1
) -> InferenceService:
    """The service on these fakes, the job backend seeing the storage's disk (as the real
    ones share the payload folder)."""
    jobs.disk = storage.disk
    return InferenceService(
        map_spec=MapSpec(command=("app",), timeout_seconds=50),
        storage=storage,
        jobs=jobs,
        clock=clock or FakeClock(),
        gate=AdmissionGate(capacity),
        stuck_deletion_seconds=60.0,
    )


async def upload(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def study_upload() -> AsyncIterator[bytes]:
    """The study's archive as a client sends it, in more than one piece."""
    return upload(ARCHIVE[:100], ARCHIVE[100:])


@asynccontextmanager
async def serving(service: InferenceService, journal: list[str]) -> AsyncIterator[None]:
    """The service running, its start-up sweep done and left out of the journal."""
    async with service.running():
        assert journal == ["sweep jobs", "sweep storage"]
        journal.clear()
        yield


@contextmanager
def deletions_held(storage: FakeStorage) -> Iterator[anyio.Event]:
    """Hold the fake's deletions until the event is set, and set it however the block ends:
    a deletion is shielded from cancellation, so a held one would hang a failing test."""
    storage.hold_deletes = anyio.Event()
    try:
        yield storage.hold_deletes
    finally:
        storage.hold_deletes.set()


async def full_request(
    service: InferenceService, job_id: str = "r1", request_id: str = ""
) -> bytes:
    inference = service.infer(job_id, study_upload(), request_id=request_id)
    async with aclosing(inference.output()) as output:
        return b"".join([chunk async for chunk in output])
