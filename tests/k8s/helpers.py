"""What the Kubernetes backend tests share: a backend on the API double, requests, runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from mis_adapters.kubernetes.backend import Connector, KubernetesJobBackend
from mis_adapters.kubernetes.ownership import Owner
from mis_app import bootstrap
from mis_core.model import JobOutcome, JobProgress, JobRequest, MapSpec, Resources, Workspace
from tests.built import settings
from tests.k8s.double import KubeDouble

SPEC = MapSpec(
    image="example/map:1", command=("app",), resources=Resources(gpu=1), timeout_seconds=30
)


def backend_for(
    tmp_path: Path,
    owner: Owner | None = None,
    connector: Connector | None = None,
    **kubernetes: Any,
) -> KubernetesJobBackend:
    """A backend as the bootstrap builds it, by default on a hostPath payload volume in the
    kubeconfig's namespace; `kubernetes`: settings of that section changed."""
    payload = tmp_path / "payload"
    payload.mkdir(exist_ok=True)
    section = {"payload_volume": {"host_path": str(payload)}, "delete_wait_seconds": 5}
    configured = settings(backend="kubernetes", kubernetes={**section, **kubernetes})
    seams = {"connector": connector} if connector else {}
    return bootstrap.kubernetes_backend(configured, owner=owner, **seams)


def request_in(tmp_path: Path, job_id: str = "req-1", spec: MapSpec = SPEC) -> JobRequest:
    workspace = Workspace(str(tmp_path / "payload"), job_id)
    Path(workspace.input_dir).mkdir(parents=True, exist_ok=True)
    Path(workspace.output_dir).mkdir(exist_ok=True)
    return JobRequest(job_id, spec, workspace)


async def run(
    backend: KubernetesJobBackend, request: JobRequest, seconds: float = 10
) -> JobOutcome:
    with anyio.fail_after(seconds):
        return await backend.run(request, JobProgress())


async def wait_for_calls(
    double: KubeDouble, group: str, resource: str, verb: str, count: int = 1
) -> None:
    """Until the double has answered `count` such requests (waiting in a worker thread)."""
    await anyio.to_thread.run_sync(lambda: double.wait_for_calls(group, resource, verb, count))


async def cancel_once_following_the_log(
    backend: KubernetesJobBackend, request: JobRequest, double: KubeDouble
) -> None:
    """Run the job and cancel it once MIS follows its MAP's log (the MAP is running)."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(backend.run, request, JobProgress())
        await wait_for_calls(double, "", "pods/log", "get")
        tg.cancel_scope.cancel()


def pod_of_mis(name: str, uid: str, phase: str = "Running") -> dict[str, Any]:
    """A MIS pod as the API has it: the owner its Jobs refer to."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "mis-test", "uid": uid, "labels": {}},
        "spec": {"containers": [{"name": "mis", "image": "mis:1"}]},
        "status": {"phase": phase},
    }
