"""The inference session against in-memory fakes: order, admission, timeout, clean-up."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from mis_core.errors import Busy, InvalidInput, JobTimedOut, MapFailed, MisError, PayloadTooLarge
from mis_core.gate import AdmissionGate
from mis_core.model import JobOutcome, MapSpec
from mis_core.session import InferenceService
from tests.fakes import FakeClock, FakeJobBackend, FakeStorage

pytestmark = pytest.mark.anyio

SUCCESS = JobOutcome(succeeded=True, exit_code=0)


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


async def full_request(service: InferenceService, request_id: str = "r1") -> bytes:
    async with service.session(request_id) as session:
        await session.receive(upload(b"PK", b"\x03\x04"))
        await session.stage()
        await session.run()
        return b"".join([chunk async for chunk in session.output()])


async def test_stages_run_in_order_and_clean_up_after_success() -> None:
    journal: list[str] = []
    storage = FakeStorage(journal)
    service = make_service(storage, FakeJobBackend(journal, SUCCESS))

    body = await full_request(service)

    assert body == b"PK-onePK-two"
    assert storage.received == b"PK\x03\x04"
    assert journal == ["create", "receive", "extract", "run", "pack", "delete"]
    assert not service.gate.full
    assert service.in_flight == {}


async def test_a_second_request_is_busy_while_the_first_holds_the_slot() -> None:
    journal: list[str] = []
    service = make_service(FakeStorage(journal), FakeJobBackend(journal, SUCCESS))

    async with service.session("first"):
        with pytest.raises(Busy, match="Another inference request is being fulfilled"):
            async with service.session("second"):
                pytest.fail("admitted past a full gate")

    assert journal == ["create", "delete"]  # the busy request touched nothing
    await full_request(service, "third")  # and the slot is free again afterwards


async def test_capacity_admits_that_many_at_once() -> None:
    journal: list[str] = []
    service = make_service(FakeStorage(journal), FakeJobBackend(journal, SUCCESS), capacity=2)
    async with service.session("a"), service.session("b"):
        assert service.gate.full
        with pytest.raises(Busy):
            async with service.session("c"):
                pass


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
        async with anyio.create_task_group() as tg:
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
    assert journal == ["create", "receive", "extract", "run", "terminate", "delete"]
    assert not service.gate.full


async def test_map_failure_reports_reason_and_log_tail() -> None:
    journal: list[str] = []
    failed = JobOutcome(False, "exited with code 3", 3, ("loading model", "error: no GPU"))
    service = make_service(FakeStorage(journal), FakeJobBackend(journal, failed))

    with pytest.raises(MapFailed) as info:
        await full_request(service)

    assert "failed: it exited with code 3" in info.value.message
    assert info.value.message.endswith("loading model\nerror: no GPU")
    assert journal[-1] == "delete"
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
    with pytest.raises(type(error)):
        await full_request(service)
    assert journal[-1] == "delete"
    assert not service.gate.full
    assert service.in_flight == {}


async def test_cancellation_while_the_job_runs_terminates_it_and_cleans_up() -> None:
    journal: list[str] = []
    jobs = FakeJobBackend(journal, outcome=None)
    service = make_service(FakeStorage(journal), jobs)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(full_request, service)
            await jobs.started.wait()
            tg.cancel_scope.cancel()  # what a client disconnect does

    assert journal == ["create", "receive", "extract", "run", "terminate", "delete"]
    assert not service.gate.full
    assert service.in_flight == {}


async def test_a_failed_delete_is_counted_and_the_slot_is_still_freed() -> None:
    journal: list[str] = []
    storage = FakeStorage(journal)
    storage.fail_delete = True
    service = make_service(storage, FakeJobBackend(journal, SUCCESS))

    await full_request(service)

    assert service.cleanup_failures == 1
    assert not service.gate.full


async def test_stages_refuse_to_run_out_of_order() -> None:
    journal: list[str] = []
    service = make_service(FakeStorage(journal), FakeJobBackend(journal, SUCCESS))
    async with service.session("r") as session:
        with pytest.raises(RuntimeError, match="cannot move to 'ran'"):
            await session.run()
    assert "run" not in journal


async def test_start_sweeps_jobs_then_their_workspaces() -> None:
    journal: list[str] = []
    service = make_service(FakeStorage(journal), FakeJobBackend(journal, SUCCESS))
    await service.start()
    assert journal == ["sweep jobs", "sweep storage"]


async def test_the_job_gets_the_workspace_and_the_registered_map() -> None:
    journal: list[str] = []
    jobs = FakeJobBackend(journal, SUCCESS)
    service = make_service(FakeStorage(journal), jobs)
    await full_request(service, "0123456789abcdef0123456789ABCDEF")
    [request] = jobs.requests
    assert request.workspace.input_dir == "/ws/0123456789abcdef0123456789ABCDEF/in"
    assert request.map.command == ("app",)
    assert request.job_id == "0123456789abcdef0123456789abcdef"
