"""What the JobBackend port promises, held to by the fake and by the real process backend."""

from __future__ import annotations

import anyio
import pytest

from mis_core.model import JobProgress
from tests.contracts.adapters import FAILING_CODE, BackendUnderTest
from tests.harness.wait import await_until

pytestmark = pytest.mark.anyio


async def test_a_job_that_succeeds_gives_a_successful_outcome(jobs: BackendUnderTest) -> None:
    backend, request = jobs.backend("succeed")
    with anyio.fail_after(20):
        outcome = await backend.run(request, JobProgress())
        await backend.close()
    assert outcome.succeeded


async def test_a_job_that_fails_gives_its_exit_code(jobs: BackendUnderTest) -> None:
    backend, request = jobs.backend("fail")
    with anyio.fail_after(20):
        outcome = await backend.run(request, JobProgress())
        await backend.close()
    assert not outcome.succeeded
    assert outcome.exit_code == FAILING_CODE
    assert outcome.reason == f"exited with code {FAILING_CODE}"


async def test_cancelling_a_run_stops_its_job_before_returning(jobs: BackendUnderTest) -> None:
    backend, request = jobs.backend("hang")
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(backend.run, request, JobProgress())
            await await_until(jobs.started, 10, "the job to start")
            assert jobs.running()
            tg.cancel_scope.cancel()
        assert not jobs.running()
        await backend.close()


async def test_an_available_backend_passes_its_check_and_sweeps_nothing(
    jobs: BackendUnderTest,
) -> None:
    backend, _ = jobs.backend("succeed")
    with anyio.fail_after(20):
        await backend.check()
        assert await backend.sweep() == 0
        await backend.close()
