"""The service's one operation against in-memory fakes: order, admission, timeout, clean-up."""

from __future__ import annotations

import anyio
import pytest

from mis_core.errors import Busy, InvalidInput, JobTimedOut, MapFailed, MisError, PayloadTooLarge
from mis_core.model import JobOutcome
from tests.core.driving import STAGES, STUDY, SUCCESS, full_request, make_service, serving
from tests.fakes import FakeClock, FakeJobBackend, FakeStorage
from tests.zips import unzipped

pytestmark = pytest.mark.anyio


async def test_stages_run_in_order_and_the_workspace_is_deleted_after_the_response() -> None:
    journal: list[str] = []
    storage = FakeStorage(journal)
    service = make_service(storage, FakeJobBackend(journal, SUCCESS))

    async with serving(service, journal):
        body = await full_request(service)
        assert journal == STAGES  # the response is complete: the deletion comes after it
    assert unzipped(body) == STUDY  # received, unpacked, run (the fakes' MAP echoes), packed
    assert journal == [*STAGES, "delete", "deleted"]
    assert storage.disk.paths == {}  # nothing of the request is left
    assert not service.gate.full
    assert service.in_flight == {}


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
            await clock.until_timed()
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


async def test_the_job_gets_the_workspace_the_registered_map_and_both_ids() -> None:
    journal: list[str] = []
    jobs = FakeJobBackend(journal, SUCCESS)
    service = make_service(FakeStorage(journal), jobs)
    job_id = "0123456789abcdef0123456789abcdef"
    async with service.running():
        await full_request(service, job_id, request_id="study-0042")
        await full_request(service, "fedcba98765432100123456789abcdef")
    [request, without_client_id] = jobs.requests
    assert request.workspace.input_dir == f"/ws/{job_id}/input"  # the workspace is the job's
    assert request.map.command == ("app",)
    assert (request.job_id, request.request_id) == (job_id, "study-0042")
    assert without_client_id.request_id == without_client_id.job_id
