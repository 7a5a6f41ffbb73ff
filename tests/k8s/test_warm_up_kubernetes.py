"""Warm-up: the MAP's image pulled onto the node before the first request; readiness waits."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from mis_core.errors import BackendUnavailable
from tests.k8s import kubelet
from tests.k8s.double import KubeDouble
from tests.k8s.helpers import backend_for, request_in

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
