"""What the JobBackend port promises, held to by the fake and by every real backend: the
process backend, the Kubernetes backend on the API double and the docker backend on Podman."""

from __future__ import annotations

import anyio
import pytest

from mis_core.errors import BackendUnavailable
from mis_core.model import JobOutcome, JobProgress, JobRequest
from mis_core.ports import JobBackend
from tests.contracts.adapters import FAILING_CODE, FAILING_LOG, BackendUnderTest, Behaviour
from tests.harness.wait import await_until

pytestmark = pytest.mark.anyio

STUDY = {"series/IM0001.dcm": b"\x01" * 3000, "notes.txt": b"hello", "empty/": b""}


async def test_a_job_reads_its_input_and_writes_its_output(jobs: BackendUnderTest) -> None:
    backend = jobs.backend()
    request = jobs.request("succeed", STUDY)  # its MAP copies the one into the other
    with anyio.fail_after(20):
        outcome = await backend.run(request, JobProgress())
        await backend.close()
    assert outcome.succeeded
    assert jobs.output(request) == STUDY


async def test_a_job_that_fails_gives_its_exit_code_and_last_log_lines(
    jobs: BackendUnderTest,
) -> None:
    backend = jobs.backend()
    with anyio.fail_after(20):
        outcome = await backend.run(jobs.request("fail"), JobProgress())
        await backend.close()
    assert not outcome.succeeded
    assert outcome.exit_code == FAILING_CODE
    assert outcome.reason == f"exited with code {FAILING_CODE}"
    assert outcome.log_tail[-len(FAILING_LOG) :] == FAILING_LOG


async def stopped_once_started(
    jobs: BackendUnderTest, backend: JobBackend, request: JobRequest
) -> list[JobOutcome]:
    """Run `request` and cancel the run once its MAP has started, as the core's timeout and a
    client going away do; what the run returned (nothing, if it was cancelled)."""
    outcomes: list[JobOutcome] = []

    async def run() -> None:
        outcomes.append(await backend.run(request, JobProgress()))

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await await_until(jobs.started, 10, "the job to start")
        assert jobs.running()
        tg.cancel_scope.cancel()
    return outcomes


@pytest.mark.parametrize("behaviour", ["hang", "stubborn"])
async def test_a_cancelled_run_stops_its_job_before_returning_and_gives_no_outcome(
    jobs: BackendUnderTest, behaviour: Behaviour
) -> None:
    backend = jobs.backend()
    with anyio.fail_after(20):
        assert await stopped_once_started(jobs, backend, jobs.request(behaviour)) == []
        assert not jobs.running()
        await backend.close()


async def test_a_backend_whose_job_was_stopped_runs_the_next(jobs: BackendUnderTest) -> None:
    backend = jobs.backend()
    with anyio.fail_after(20):
        await stopped_once_started(jobs, backend, jobs.request("hang"))
        request = jobs.request("succeed", STUDY)
        assert (await backend.run(request, JobProgress())).succeeded
        await backend.close()
    assert jobs.output(request) == STUDY


async def test_an_available_backend_passes_its_check(jobs: BackendUnderTest) -> None:
    backend = jobs.backend()
    await backend.check()
    await backend.close()


async def test_a_backend_that_cannot_start_jobs_fails_its_check(
    jobs: BackendUnderTest,
) -> None:
    backend = jobs.backend(startable=False)
    with pytest.raises(BackendUnavailable):
        await backend.check()
    await backend.close()


async def test_sweep_terminates_and_counts_the_jobs_an_earlier_process_left(
    jobs: BackendUnderTest,
) -> None:
    backend = jobs.backend()
    with anyio.fail_after(20):
        assert await backend.sweep() == 0  # nothing left yet
        await jobs.leave_job()
        assert jobs.left_running()
        assert await backend.sweep() == 1
        await await_until(lambda: not jobs.left_running(), 5, "the leftover job to end")
        assert await backend.sweep() == 0  # terminated once, not found again
        await backend.close()
