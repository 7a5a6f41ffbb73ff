"""The service's readiness asks its ports, then its own deletions: each reason reaches the
caller as BackendUnavailable with the port's own words."""

from __future__ import annotations

import anyio
import pytest

from mis_core.errors import BackendUnavailable
from tests.core.driving import SUCCESS, full_request, make_service, serving
from tests.fakes import FakeClock, FakeJobBackend, FakeStorage

pytestmark = pytest.mark.anyio


async def test_ready_until_a_port_says_otherwise_then_its_reason_is_given() -> None:
    journal: list[str] = []
    storage = FakeStorage(journal)
    jobs = FakeJobBackend(journal, SUCCESS)
    service = make_service(storage, jobs)
    await service.check_ready()  # both ports answer

    storage.unready = BackendUnavailable("the payload folder is full")
    with pytest.raises(BackendUnavailable, match="the payload folder is full"):
        await service.check_ready()
    storage.unready = None

    jobs.unready = BackendUnavailable("the MAP's program does not exist")
    with pytest.raises(BackendUnavailable, match="program does not exist"):
        await service.check_ready()


async def test_a_deletion_failing_for_stuck_deletion_seconds_makes_it_unready() -> None:
    journal: list[str] = []
    storage = FakeStorage(journal)
    storage.fail_delete = True
    clock = FakeClock()
    service = make_service(storage, FakeJobBackend(journal, SUCCESS), clock)
    service.stuck_deletion_seconds = 10.0

    with anyio.fail_after(5):
        async with serving(service, journal):
            await full_request(service)
            await anyio.wait_all_tasks_blocked()
            assert service.failing_deletions  # retried in the background
            clock.advance(9.0)
            await anyio.wait_all_tasks_blocked()
            await service.check_ready()  # failing, but not for long yet
            clock.advance(1.0)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(BackendUnavailable, match=r"server\.stuck_deletion_seconds: 10"):
                await service.check_ready()
            storage.fail_delete = False  # the fault clears: the next retry deletes it
            clock.advance(60.0)
            await anyio.wait_all_tasks_blocked()
            assert not service.failing_deletions
            await service.check_ready()
