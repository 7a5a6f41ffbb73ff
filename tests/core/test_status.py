"""The service's read model: one value saying what it is doing, read against the fakes and a
clock that moves only when the test says so."""

from __future__ import annotations

import anyio
import pytest

from mis_core.service import ServiceStatus
from tests.core.driving import SUCCESS, deletions_held, full_request, make_service, serving
from tests.fakes import FakeClock, FakeJobBackend, FakeStorage

pytestmark = pytest.mark.anyio

IDLE = ServiceStatus(
    busy=False,
    capacity=2,
    running=(),
    deleting=0,
    timeout_seconds=50,
    cleanup_failures=0,
    retrying_deletions=0,
)


async def test_status_follows_the_requests_in_flight_and_their_elapsed_time() -> None:
    journal: list[str] = []
    clock = FakeClock()
    jobs = FakeJobBackend(journal, outcome=None)
    service = make_service(FakeStorage(journal), jobs, clock, capacity=2)
    assert service.status() == IDLE

    with anyio.fail_after(5):
        async with serving(service, journal), anyio.create_task_group() as tg:
            tg.start_soon(full_request, service, "first")
            await jobs.started.wait()
            clock.advance(1.5)
            one = service.status()
            tg.start_soon(full_request, service, "second")
            while journal.count("run") < 2:
                await anyio.wait_all_tasks_blocked()
            clock.advance(2.0)
            two = service.status()
            tg.cancel_scope.cancel()

    assert (one.busy, one.running, one.in_flight) == (False, (1.5,), 1)
    assert (two.busy, two.running, two.in_flight) == (True, (3.5, 2.0), 2)
    assert service.status() == IDLE  # the slots are free, the workspaces deleted


async def test_status_counts_pending_and_failing_deletions() -> None:
    journal: list[str] = []
    storage = FakeStorage(journal)
    service = make_service(storage, FakeJobBackend(journal, SUCCESS))

    with anyio.fail_after(5):
        async with serving(service, journal):
            with deletions_held(storage):
                await full_request(service, "held")
                await anyio.wait_all_tasks_blocked()
                held = service.status()
            await anyio.wait_all_tasks_blocked()
            storage.fail_delete = True
            await full_request(service, "failing")
            await anyio.wait_all_tasks_blocked()
            failing = service.status()

    assert (held.busy, held.in_flight, held.deleting) == (False, 0, 1)
    assert (held.cleanup_failures, held.retrying_deletions) == (0, 0)
    assert (failing.deleting, failing.cleanup_failures, failing.retrying_deletions) == (1, 1, 1)
    assert (failing.capacity, failing.timeout_seconds) == (1, 50)
