"""The chart's Role is exactly sufficient: it grants every call the backend makes, and no more.

The calls come from the API double's request log while the real backend runs every path it
has: sweeping, success, failure, a stopped job, warm-up and, for a claim, reading the claim.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from mis_adapters.kubernetes.job import build_job
from mis_adapters.kubernetes.ownership import Owner
from mis_app import bootstrap
from mis_core.model import JobProgress, JobRequest, MapSpec, Workspace
from tests.built import settings
from tests.helm.chart import CHART, find, render
from tests.k8s import kubelet
from tests.k8s.double import KubeDouble
from tests.k8s.helpers import pod_of_mis, wait_for_calls

pytestmark = pytest.mark.anyio


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def request(tmp_path: Path, job_id: str) -> JobRequest:
    workspace = Workspace(str(tmp_path / "payload"), job_id)
    Path(workspace.input_dir).mkdir(parents=True)
    Path(workspace.output_dir).mkdir()
    spec = MapSpec(image="example/map:1", timeout_seconds=30)
    return JobRequest(job_id, spec, workspace)


async def exercise(double: KubeDouble, tmp_path: Path, **volume: str) -> set[tuple[str, str, str]]:
    """Every path of the backend against the double; the (group, resource, verb) it used."""
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "payload", "namespace": "mis-test"},
        "spec": {"accessModes": ["ReadWriteOnce"]},
    }
    double.call(double.put, "persistentvolumeclaims", "mis-test", claim, "ADDED")
    double.call(double.put, "pods", "mis-test", pod_of_mis("mis-other", "uid-other"), "ADDED")
    kubernetes = {"payload_volume": volume, "node_name": "node-1", "delete_wait_seconds": 5}
    backend = bootstrap.kubernetes_backend(settings(backend="kubernetes", kubernetes=kubernetes))
    with anyio.fail_after(30):
        # a Job of another MIS pod, alive: the sweep looks its owner up, and keeps it
        other = Owner(pod_name="mis-other", pod_uid="uid-other")
        other_job = build_job(request(tmp_path, "other"), await backend.job_options(), other)
        await (await backend.api()).create_job(other_job)
        assert await backend.sweep() == 0
        double.behaviour = kubelet.finishes(0)
        assert (await backend.run(request(tmp_path, "ok"), JobProgress())).succeeded
        double.behaviour = kubelet.finishes(2, "Error", lines=["boom"])
        assert not (await backend.run(request(tmp_path, "fails"), JobProgress())).succeeded
        double.behaviour = kubelet.hangs()
        async with anyio.create_task_group() as tg:
            tg.start_soon(backend.run, request(tmp_path, "stopped"), JobProgress())
            # a job that runs a while has both of its watches open
            await wait_for_calls(double, "batch", "jobs", "watch")
            await wait_for_calls(double, "", "pods", "watch")
            tg.cancel_scope.cancel()
        double.behaviour = kubelet.finishes(0)
        await backend.warm_up(request(tmp_path, "warm-up"))
        await backend.check()
    await backend.close()
    return double.verbs()


async def test_role_grants_exactly_what_the_backend_uses_with_a_claim(
    double: KubeDouble, tmp_path: Path
) -> None:
    role = find(render(), "Role")  # the default: a chart-created claim, node-locality read from it
    used = await exercise(double, tmp_path, claim_name="payload")
    assert ("", "persistentvolumeclaims", "get") in used
    assert used == granted(role)


async def test_role_grants_exactly_what_the_backend_uses_with_a_host_path(
    double: KubeDouble, tmp_path: Path
) -> None:
    role = find(render(CHART / "ci" / "single-node-hostpath-values.yaml"), "Role")
    used = await exercise(double, tmp_path, host_path=str(tmp_path / "payload"))
    assert used == granted(role)
