"""Warm-up: the MAP's image pulled onto the node before the first request; readiness waits."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from loguru import logger

from mis_adapters.kubernetes.credentials import Connection, connect
from mis_app import bootstrap
from mis_core.errors import BackendUnavailable
from tests.built import settings
from tests.harness.in_process import served
from tests.harness.wait import await_until
from tests.k8s import kubelet
from tests.k8s.double import KubeDouble
from tests.k8s.helpers import backend_for, request_in
from tests.zips import make_zip

pytestmark = pytest.mark.anyio


async def test_warm_up_pulls_the_image_and_readiness_waits_for_it(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.behaviour = kubelet.finishes(0)
    backend = backend_for(tmp_path)
    assert backend.warm_up_state == ""
    with anyio.fail_after(10):
        await backend.warm_up(request_in(tmp_path, "warm-up"))
    assert backend.warm_up_state == "done"
    await backend.check()
    assert double.items("jobs") == []
    created = [j for j in double.history if j[1] == "jobs" and j[2] == "ADDED"]
    assert created[-1][3]["spec"]["template"]["spec"]["containers"][0]["command"] == ["true"]
    await backend.close()


@pytest.mark.slow
async def test_warm_up_that_cannot_pull_keeps_the_service_unready(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.behaviour = kubelet.image_pull_fails()
    backend = backend_for(tmp_path)
    with anyio.fail_after(10):
        await backend.warm_up(request_in(tmp_path, "warm-up"))
    with pytest.raises(BackendUnavailable, match="could not be pulled: could not get its image"):
        await backend.check()
    await backend.close()


async def test_a_warm_up_that_cannot_reach_the_api_is_given_up_and_mis_serves_once_it_can(
    double: KubeDouble, tmp_path: Path
) -> None:
    """The API is not there while MIS starts (its sweep and its warm-up fail), then it is:
    readiness said why while it was not, and MIS is ready and serves once it is (a blip at
    start-up must not leave MIS unready until it is restarted)."""
    double.behaviour = kubelet.finishes(0)
    reachable = False

    async def connector(namespace: str) -> Connection:
        if not reachable:
            raise BackendUnavailable("No Kubernetes connection (the test's connector).")
        return await connect(namespace)

    backend = backend_for(tmp_path, connector=connector)
    payload = tmp_path / "payload"
    configured = settings(
        backend="kubernetes",
        server={"payload_dir": str(payload)},
        kubernetes={"payload_volume": {"host_path": str(payload)}, "warm_up": True},
    )
    app = bootstrap.create_app(configured, backend=bootstrap.Backend(backend, warm_up=backend))
    study = make_zip(tmp_path / "study.zip", {"ct/slice-1.dcm": b"\x01" * 100}).read_bytes()
    logged: list[str] = []
    sink = logger.add(logged.append, level="WARNING", format="{message}")
    try:
        async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            await await_until(
                lambda: any("warm-up given up" in line for line in logged), what="the give-up"
            )
            unready = await client.get("/readyz")
            assert unready.status_code == 503
            assert unready.json()["error"]["message"] == (
                "No Kubernetes connection (the test's connector)."
            )
            reachable = True
            assert (await client.get("/readyz")).status_code == 200
            answer = await client.post("/v1/inference", files={"file": study})
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == "application/zip"
    finally:
        logger.remove(sink)


@pytest.mark.parametrize(
    ("status", "ready"), [(403, False), (422, False), (503, True)], ids=["403", "422", "503"]
)
async def test_a_refused_warm_up_keeps_mis_unready_and_a_failing_api_gives_it_up(
    double: KubeDouble, tmp_path: Path, status: int, ready: bool
) -> None:
    """A Role that may not create Jobs, or a Job the API finds invalid, would fail every
    request: readiness says so. An API failing inside may pass: the warm-up is given up."""
    double.behaviour = kubelet.finishes(0)
    double.faults.answer("jobs", "create", status, times=1000)
    backend = backend_for(tmp_path, api_retry_max_seconds=1)
    try:
        with anyio.fail_after(10):
            await backend.warm_up(request_in(tmp_path, "warm-up"))
        if ready:
            await backend.check()
        else:
            with pytest.raises(BackendUnavailable, match=f"could not be pulled: {status} "):
                await backend.check()
    finally:
        await backend.close()
    assert double.count("batch", "jobs", "delete") == (1 if ready else 0)  # 503: unsure


async def test_a_warm_up_refused_for_a_name_taken_deletes_nothing(
    double: KubeDouble, tmp_path: Path
) -> None:
    """A Job of that name that is not this MIS's (409) is never deleted by its warm-up."""
    double.faults.answer("jobs", "create", 409)
    backend = backend_for(tmp_path)
    try:
        with anyio.fail_after(10):
            await backend.warm_up(request_in(tmp_path, "warm-up"))
    finally:
        await backend.close()
    assert double.count("batch", "jobs", "delete") == 0
