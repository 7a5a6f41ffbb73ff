"""The service's one operation against in-memory fakes: order, admission, timeout, clean-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any

import anyio
import pytest
from loguru import logger

from mis_core.errors import Busy, InvalidInput, JobTimedOut, MapFailed, MisError, PayloadTooLarge
from mis_core.gate import AdmissionGate
from mis_core.model import JobOutcome, MapSpec
from mis_core.service import InferenceService
from tests.fakes import FakeClock, FakeJobBackend, FakeStorage

pytestmark = pytest.mark.anyio

SUCCESS = JobOutcome(succeeded=True, exit_code=0)
STAGES = ["create", "receive", "extract", "run", "pack"]


def make_service(
    storage: FakeStorage, jobs: FakeJobBackend, clock: FakeClock | None = None, capacity: int = 1
) -> InferenceService:
    return InferenceService(
        map_spec=MapSpec(command=("app",), timeout_seconds=50),
        storage=storage,
        jobs=jobs,
        clock=clock or FakeClock(),
        gate=AdmissionGate(capacity),
    )


async def upload(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


@asynccontextmanager
async def serving(service: InferenceService, journal: list[str]) -> AsyncIterator[None]:
    """The service running, its start-up sweep done and left out of the journal."""
    async with service.running():
        assert journal == ["sweep jobs", "sweep storage"]
        journal.clear()
        yield


async def full_request(service: InferenceService, request_id: str = "r1") -> bytes:
    inference = service.infer(request_id, upload(b"PK", b"\x03\x04"))
    async with aclosing(inference.output()) as output:
        return b"".join([chunk async for chunk in output])


async def test_stages_run_in_order_and_the_workspace_is_deleted_after_the_response() -> None:
    journal: list[str] = []
    storage = FakeStorage(journal)
    service = make_service(storage, FakeJobBackend(journal, SUCCESS))

    async with serving(service, journal):
        body = await full_request(service)
        assert journal == STAGES  # the response is complete: the deletion comes after it
    assert body == b"PK-onePK-two"
    assert storage.received == b"PK\x03\x04"
    assert journal == [*STAGES, "delete", "deleted"]
    assert not service.gate.full
    assert service.in_flight == {}


async def test_the_next_request_is_admitted_while_the_last_workspace_is_still_being_deleted() -> (
    None
):
    journal: list[str] = []
    storage = FakeStorage(journal)
    storage.hold_deletes = anyio.Event()
    service = make_service(storage, FakeJobBackend(journal, SUCCESS))

    with anyio.fail_after(5):
        async with serving(service, journal):
            await full_request(service, "first")
            await anyio.wait_all_tasks_blocked()
            assert service.gate.deleting == 1
            assert await full_request(service, "second") == b"PK-onePK-two"
            assert journal.count("deleted") == 0
            storage.hold_deletes.set()
    assert journal.count("deleted") == 2
    assert service.gate.deleting == 0


async def test_a_request_beyond_the_bound_waits_for_a_pending_deletion_and_is_not_busy() -> None:
    journal: list[str] = []
    storage = FakeStorage(journal)
    storage.hold_deletes = anyio.Event()
    service = make_service(storage, FakeJobBackend(journal, SUCCESS))

    with anyio.fail_after(5):
        async with serving(service, journal), anyio.create_task_group() as tg:
            await full_request(service, "first")
            await full_request(service, "second")  # one deletion pending behind the slot
            tg.start_soon(full_request, service, "third")  # a second one: wait for the volume
            await anyio.wait_all_tasks_blocked()
            assert journal.count("create") == 2  # the third made no workspace yet ...
            assert service.gate.full  # ... but holds the slot
            with pytest.raises(Busy):
                await full_request(service, "fourth")
            storage.hold_deletes.set()
    assert journal.count("create") == 3
    assert journal.count("deleted") == 3


async def test_a_second_request_is_busy_while_the_first_holds_the_slot() -> None:
    journal: list[str] = []
    jobs = FakeJobBackend(journal, outcome=None)
    service = make_service(FakeStorage(journal), jobs)

    with anyio.fail_after(5):
        async with serving(service, journal), anyio.create_task_group() as tg:
            tg.start_soon(full_request, service, "first")
            await jobs.started.wait()
            with pytest.raises(Busy, match="Another inference request is being fulfilled"):
                await full_request(service, "second")
            assert journal == ["create", "receive", "extract", "run"]  # busy touched nothing
            tg.cancel_scope.cancel()


async def test_capacity_admits_that_many_at_once_and_ids_are_not_keys() -> None:
    journal: list[str] = []
    jobs = FakeJobBackend(journal, outcome=None)
    service = make_service(FakeStorage(journal), jobs, capacity=2)

    with anyio.fail_after(5):
        async with serving(service, journal), anyio.create_task_group() as tg:
            tg.start_soon(full_request, service, "same-id")
            tg.start_soon(full_request, service, "same-id")
            while journal.count("run") < 2:
                await anyio.wait_all_tasks_blocked()
            assert service.gate.full
            assert len(service.in_flight) == 2  # one client id, two requests
            with pytest.raises(Busy):
                await full_request(service, "third")
            tg.cancel_scope.cancel()
    assert service.in_flight == {}
    assert journal.count("deleted") == 2


async def test_timeout_terminates_the_job_using_the_clock_port_only() -> None:
    journal: list[str] = []
    clock = FakeClock()
    jobs = FakeJobBackend(journal, outcome=None)
    jobs.waiting_reason = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu"
    service = make_service(FakeStorage(journal), jobs, clock)
    caught: list[BaseException] = []

    async def request() -> None:
        try:
            await full_request(service)
        except MisError as exc:
            caught.append(exc)

    with anyio.fail_after(5):  # a guard against a hang, not part of the behaviour
        async with serving(service, journal), anyio.create_task_group() as tg:
            tg.start_soon(request)
            await jobs.started.wait()
            await clock.until_sleeping()
            clock.advance(49.9)
            await anyio.wait_all_tasks_blocked()
            assert "terminate" not in journal
            clock.advance(0.1)

    [error] = caught
    assert isinstance(error, JobTimedOut)
    assert "did not finish within 50 seconds" in error.message
    assert "Insufficient nvidia.com/gpu" in error.message
    assert journal == ["create", "receive", "extract", "run", "terminate", "delete", "deleted"]
    assert not service.gate.full


async def test_map_failure_reports_reason_and_log_tail() -> None:
    journal: list[str] = []
    failed = JobOutcome(False, "exited with code 3", 3, ("loading model", "error: no GPU"))
    service = make_service(FakeStorage(journal), FakeJobBackend(journal, failed))

    async with serving(service, journal):
        with pytest.raises(MapFailed) as info:
            await full_request(service)

    assert "failed: it exited with code 3" in info.value.message
    assert info.value.message.endswith("loading model\nerror: no GPU")
    assert journal[-2:] == ["delete", "deleted"]
    assert not service.gate.full


@pytest.mark.parametrize(
    ("stage", "error"),
    [
        ("receive", PayloadTooLarge("too big")),
        ("extract", InvalidInput("bad zip")),
        ("pack", MisError("pack broke")),
    ],
)
async def test_every_failing_stage_still_cleans_up(stage: str, error: MisError) -> None:
    journal: list[str] = []
    service = make_service(
        FakeStorage(journal, fail_at=stage, error=error), FakeJobBackend(journal, SUCCESS)
    )
    async with serving(service, journal):
        with pytest.raises(type(error)):
            await full_request(service)
    assert journal[-3:] == [stage, "delete", "deleted"]
    assert not service.gate.full
    assert service.in_flight == {}


async def test_a_refused_workspace_leaves_nothing_to_delete() -> None:
    journal: list[str] = []
    service = make_service(
        FakeStorage(journal, fail_at="create", error=Busy("same id")),
        FakeJobBackend(journal, SUCCESS),
    )
    async with serving(service, journal):
        with pytest.raises(Busy):
            await full_request(service)
    assert journal == ["create"]
    assert (service.gate.in_use, service.gate.deleting) == (0, 0)


async def test_cancellation_while_the_job_runs_terminates_it_and_cleans_up() -> None:
    journal: list[str] = []
    jobs = FakeJobBackend(journal, outcome=None)
    service = make_service(FakeStorage(journal), jobs)

    with anyio.fail_after(5):
        async with serving(service, journal), anyio.create_task_group() as tg:
            tg.start_soon(full_request, service)
            await jobs.started.wait()
            tg.cancel_scope.cancel()  # what a client disconnect does

    assert journal == ["create", "receive", "extract", "run", "terminate", "delete", "deleted"]
    assert not service.gate.full
    assert service.in_flight == {}


async def test_a_consumer_that_stops_reading_frees_the_slot_when_it_closes_the_output() -> None:
    journal: list[str] = []
    service = make_service(FakeStorage(journal), FakeJobBackend(journal, SUCCESS))

    async with serving(service, journal):
        inference = service.infer("r", upload(b"PK"))
        async with aclosing(inference.output()) as output:
            assert await anext(output) == b"PK-one"
            assert service.gate.full
        assert not service.gate.full
    assert journal == [*STAGES, "delete", "deleted"]
    assert inference.bytes_out == len(b"PK-one")


async def test_a_failed_delete_is_counted_and_the_slot_is_still_freed() -> None:
    journal: list[str] = []
    storage = FakeStorage(journal)
    storage.fail_delete = True
    service = make_service(storage, FakeJobBackend(journal, SUCCESS))

    async with serving(service, journal):
        await full_request(service)

    assert service.cleanup_failures == 1
    assert (service.gate.in_use, service.gate.deleting) == (0, 0)


async def test_the_deletion_is_logged_after_the_response_with_the_request_id() -> None:
    journal: list[str] = []
    service = make_service(FakeStorage(journal), FakeJobBackend(journal, SUCCESS))
    deleted: list[float] = []
    service.on_deleted = deleted.append
    lines: list[tuple[str, Any]] = []
    sink = logger.add(lambda m: lines.append((m.record["message"], m.record["extra"])))
    try:
        async with serving(service, journal):
            with logger.contextualize(request_id="study-7"):
                await full_request(service, "study-7")
    finally:
        logger.remove(sink)
    messages = [message.split(" ")[0] for message, _ in lines]
    assert messages.index("responded") < messages.index("cleaned")
    assert dict(lines)["cleaned"]["request_id"] == "study-7"
    assert deleted == [0.0]  # the fake clock does not move


async def test_requests_are_served_only_while_the_service_runs() -> None:
    journal: list[str] = []
    service = make_service(FakeStorage(journal), FakeJobBackend(journal, SUCCESS))
    with pytest.raises(RuntimeError, match="running"):
        await full_request(service)
    assert journal == []


async def test_start_sweeps_jobs_then_their_workspaces() -> None:
    journal: list[str] = []
    service = make_service(FakeStorage(journal), FakeJobBackend(journal, SUCCESS))
    async with service.running():
        assert journal == ["sweep jobs", "sweep storage"]


async def test_the_job_gets_the_workspace_and_the_registered_map() -> None:
    journal: list[str] = []
    jobs = FakeJobBackend(journal, SUCCESS)
    service = make_service(FakeStorage(journal), jobs)
    async with service.running():
        await full_request(service, "0123456789abcdef0123456789ABCDEF")
    [request] = jobs.requests
    assert request.workspace.input_dir == "/ws/0123456789abcdef0123456789ABCDEF/input"
    assert request.map.command == ("app",)
    assert request.job_id == "0123456789abcdef0123456789abcdef"
