"""The app's lifespan: the backend's warm-up runs beside the service and cannot stop it (what
it raises is logged), and the backend is closed however the app ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from loguru import logger

from mis_app import bootstrap
from mis_app.state import app_state
from mis_core.model import JobOutcome, JobRequest
from tests import built
from tests.fakes import FakeClock, FakeJobBackend, FakeStorage
from tests.harness.in_process import served
from tests.harness.wait import await_until

pytestmark = pytest.mark.anyio


class FaultyWarmUp:
    """A warm-up with a fault in it: it raises what no backend says it raises."""

    async def warm_up(self, request: JobRequest) -> None:
        raise RuntimeError("a fault in the warm-up")


class SweepFails(FakeJobBackend):
    async def sweep(self) -> int:
        raise RuntimeError("a fault in the sweep")


def app_on(tmp_path: Path, jobs: FakeJobBackend, **backend: Any) -> Any:
    return bootstrap.create_app(
        built.settings(server={"payload_dir": str(tmp_path)}),
        backend=bootstrap.Backend(jobs, **backend),
        storage=FakeStorage(jobs.journal),
        clock=FakeClock(),
    )


async def test_a_warm_up_that_raises_is_logged_and_mis_keeps_serving(tmp_path: Path) -> None:
    jobs = FakeJobBackend([], JobOutcome(succeeded=True))
    app = app_on(tmp_path, jobs, warm_up=FaultyWarmUp())
    errors: list[Any] = []
    sink = logger.add(errors.append, level="ERROR", format="{message}")
    try:
        async with served(app) as url, httpx.AsyncClient(base_url=url) as client:
            await await_until(lambda: errors, what="the warm-up's fault logged")
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/v1/status")).json()["state"] == "idle"
            assert app_state(app).service.serving  # its deletions' task group runs on
    finally:
        logger.remove(sink)
    assert "the backend's warm-up failed; MIS serves anyway" in errors[0]
    assert errors[0].record["exception"].value.args == ("a fault in the warm-up",)
    assert jobs.journal[-1] == "close jobs"


async def test_the_backend_is_closed_when_the_service_cannot_start(tmp_path: Path) -> None:
    jobs = SweepFails([])
    app = app_on(tmp_path, jobs)
    with pytest.raises(RuntimeError, match="a fault in the sweep"):
        async with app.router.lifespan_context(app):
            raise AssertionError("the service started")
    assert jobs.journal == ["close jobs"]
