"""The Kubernetes backend: kubernetes-asyncio talking real HTTP to the API double."""

from __future__ import annotations

import time
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest
from loguru import logger

from mis_adapters.clock import MonotonicClock
from mis_adapters.kubernetes.backend import KubernetesJobBackend
from mis_adapters.kubernetes.job import JobOptions
from mis_adapters.storage.volume import LocalStorage, PayloadLimits
from mis_core.errors import BackendUnavailable, JobTimedOut
from mis_core.gate import AdmissionGate
from mis_core.model import JobProgress, JobRequest, MapSpec, Resources, Workspace
from mis_core.service import InferenceService
from tests.k8s import kubelet
from tests.k8s.double import KubeDouble

pytestmark = pytest.mark.anyio

SPEC = MapSpec(
    image="example/map:1", command=("app",), resources=Resources(gpu=1), timeout_seconds=30
)


def backend_for(tmp_path: Path, **options: object) -> KubernetesJobBackend:
    payload = tmp_path / "payload"
    payload.mkdir(exist_ok=True)
    values: dict[str, object] = {
        "namespace": "",
        "host_path": str(payload),
    }
    values.update(options)
    return KubernetesJobBackend(JobOptions(**values), delete_wait_seconds=5)  # type: ignore[arg-type]


def request_in(tmp_path: Path, request_id: str = "req-1", spec: MapSpec = SPEC) -> JobRequest:
    workspace = Workspace(str(tmp_path / "payload"), request_id)
    Path(workspace.input_dir).mkdir(parents=True, exist_ok=True)
    Path(workspace.output_dir).mkdir(exist_ok=True)
    return JobRequest(request_id, spec, workspace)


async def run(backend: KubernetesJobBackend, request: JobRequest, seconds: float = 10):
    with anyio.fail_after(seconds):
        return await backend.run(request, JobProgress())


async def test_success_streams_the_log_and_deletes_the_job(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.behaviour = kubelet.finishes(0, lines=["loading model", "segmenting 3 slices", "done"])
    backend = backend_for(tmp_path)
    lines: list[tuple[str, str]] = []
    sink = logger.add(
        lambda m: lines.append((m.record["extra"].get("source", ""), m.record["message"]))
    )
    try:
        outcome = await run(backend, request_in(tmp_path))
    finally:
        logger.remove(sink)
        await backend.close()

    assert outcome.succeeded
    assert ("map", "segmenting 3 slices") in lines
    assert double.items("jobs") == []
    [job_create] = [r for r in double.requests if r == ("batch", "jobs", "create")]
    assert job_create


async def test_the_namespace_comes_from_the_kubeconfig_context(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.behaviour = kubelet.hangs()
    backend = backend_for(tmp_path)
    async with anyio.create_task_group() as tg:
        tg.start_soon(backend.run, request_in(tmp_path), JobProgress())
        with anyio.fail_after(5):
            while not double.items("pods", "mis-test"):
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    await backend.close()


async def test_non_zero_exit_reports_code_and_log_tail(double: KubeDouble, tmp_path: Path) -> None:
    double.behaviour = kubelet.finishes(
        3, "Error", lines=[f"step {n}" for n in range(30)] + ["Traceback: boom"]
    )
    backend = backend_for(tmp_path)
    outcome = await run(backend, request_in(tmp_path))
    await backend.close()
    assert not outcome.succeeded
    assert outcome.exit_code == 3
    assert outcome.reason == "exited with code 3"
    assert outcome.log_tail[-1] == "Traceback: boom"
    assert len(outcome.log_tail) == 20
    assert double.items("jobs") == []


async def test_oom_killed_is_named(double: KubeDouble, tmp_path: Path) -> None:
    double.behaviour = kubelet.finishes(137, "OOMKilled", lines=["allocating"])
    backend = backend_for(tmp_path)
    outcome = await run(backend, request_in(tmp_path))
    await backend.close()
    assert not outcome.succeeded
    assert "OOMKilled" in outcome.reason
    assert "map.resources.memory" in outcome.reason


async def test_image_pull_failure_fails_fast(double: KubeDouble, tmp_path: Path) -> None:
    double.behaviour = kubelet.image_pull_fails()
    backend = backend_for(tmp_path)
    started = time.monotonic()
    outcome = await run(backend, request_in(tmp_path), seconds=5)
    await backend.close()
    assert time.monotonic() - started < 5  # the MAP's timeout is 30 s
    assert not outcome.succeeded
    assert "could not get its image example/map:1 (ErrImagePull" in outcome.reason
    assert double.items("jobs") == []


def service_with(backend: KubernetesJobBackend, tmp_path: Path, timeout: float) -> InferenceService:
    limits = PayloadLimits(10**9, 10**9, 1000, 200)
    return InferenceService(
        map_spec=MapSpec(
            image="example/map:1", timeout_seconds=timeout, resources=Resources(gpu=1)
        ),
        storage=LocalStorage(tmp_path / "payload", limits),
        jobs=backend,
        clock=MonotonicClock(),
        gate=AdmissionGate(1),
    )


async def empty_zip():
    yield b"PK\x05\x06" + bytes(18)


async def test_unschedulable_then_timeout_says_why_and_removes_job_and_pod(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.behaviour = kubelet.unschedulable()
    backend = backend_for(tmp_path)
    service = service_with(backend, tmp_path, timeout=1)

    async def request() -> None:
        async with service.running():
            inference = service.infer("req-gpu", empty_zip())
            async with aclosing(inference.output()) as output:
                async for _ in output:
                    pass

    with pytest.raises(JobTimedOut) as info, anyio.fail_after(10):
        await request()
    await backend.close()
    assert "0/1 nodes are available: 1 Insufficient nvidia.com/gpu." in info.value.message
    assert double.items("jobs") == []
    assert double.items("pods") == []
    assert list((tmp_path / "payload").iterdir()) == []


async def cancel_once_running(
    backend: KubernetesJobBackend, request: JobRequest, double: KubeDouble
) -> float:
    """Run the job, cancel it once its MAP has logged; the seconds its clean-up then took."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(backend.run, request, JobProgress())
        with anyio.fail_after(5):
            while not double.logs:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
        cancelled = time.monotonic()
    return time.monotonic() - cancelled


async def test_cancelling_deletes_the_job_and_waits_for_the_pod(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.behaviour = kubelet.hangs()
    double.pod_deletion_seconds = 0.3  # the pod lingers while it terminates
    backend = backend_for(tmp_path)
    await cancel_once_running(backend, request_in(tmp_path), double)
    await backend.close()
    assert double.items("jobs") == []
    assert double.items("pods") == []  # gone before run() returned, not merely deleted


async def test_a_pod_that_vanished_while_the_watch_was_away_is_seen_gone_on_relisting(
    double: KubeDouble, tmp_path: Path
) -> None:
    """Waiting for the pod after a cancel: its watch drops, the history it would resume from is
    compacted, and the pod goes meanwhile, so no DELETED event will ever come. The relisting
    must count as the answer, not the delete_wait_seconds bound (5 s here)."""
    double.behaviour = kubelet.hangs()
    double.pod_deletion_seconds = 60  # it would linger far longer than the test

    def vanish_unseen() -> None:
        for pod in double.items("pods"):
            double.objects.pop(("pods", pod["metadata"]["namespace"], pod["metadata"]["name"]))
        double.compact()
        double.drop_watches()

    async def vanish_once_the_job_is_deleted() -> None:
        while not double.logs or double.items("jobs"):
            await anyio.sleep(0.01)
        await anyio.sleep(0.3)  # MIS is watching the pod go
        await anyio.to_thread.run_sync(double.call, vanish_unseen)

    backend = backend_for(tmp_path)
    async with anyio.create_task_group() as side:
        side.start_soon(vanish_once_the_job_is_deleted)
        clean_up_seconds = await cancel_once_running(backend, request_in(tmp_path), double)
    await backend.close()
    assert clean_up_seconds < 3
    assert double.items("pods") == []


async def test_dropped_and_expired_watches_are_resumed(double: KubeDouble, tmp_path: Path) -> None:
    finish = kubelet.finishes(0, lines=["late result"])

    async def disrupted(kube: KubeDouble, ns: str, job: dict, pod: str) -> None:
        import asyncio

        await asyncio.sleep(0.2)  # let MIS's watches start
        kube.drop_watches()
        kube.compact()  # and the version they would resume from is gone: 410
        await asyncio.sleep(0.2)  # they come back, get 410 Gone, and list again
        await finish(kube, ns, job, pod)

    double.behaviour = disrupted
    backend = backend_for(tmp_path)
    outcome = await run(backend, request_in(tmp_path))
    await backend.close()
    assert outcome.succeeded
    pod_lists = [r for r in double.requests if r == ("", "pods", "list")]
    assert len(pod_lists) >= 2, f"after 410 Gone the pods must be listed again: {double.requests}"


async def test_api_server_down_is_backend_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = KubeDouble()
    down.port = 1  # nothing listens there
    monkeypatch.setenv("KUBECONFIG", str(down.kubeconfig(tmp_path / "kubeconfig")))
    backend = backend_for(tmp_path)
    with pytest.raises(BackendUnavailable, match="cannot be reached"):
        await backend.check()
    with pytest.raises(BackendUnavailable, match="cannot be reached"):
        await backend.run(request_in(tmp_path), JobProgress())
    await backend.close()


async def test_no_kubeconfig_is_backend_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(BackendUnavailable, match="KUBECONFIG"):
        await backend_for(tmp_path).check()


async def test_sweep_deletes_only_this_installations_jobs(
    double: KubeDouble, tmp_path: Path
) -> None:
    def job(name: str, instance: str) -> dict:
        labels = {
            "app.kubernetes.io/managed-by": "monai-inference-service",
            "app.kubernetes.io/instance": instance,
        }
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "namespace": "mis-test", "labels": labels, "uid": name},
            "spec": {"template": {"metadata": {}, "spec": {"containers": []}}},
        }

    double.call(double.put, "jobs", "mis-test", job("mis-leftover-1", "mis"), "ADDED")
    double.call(double.put, "jobs", "mis-test", job("mis-leftover-2", "mis"), "ADDED")
    double.call(double.put, "jobs", "mis-test", job("other-install-1", "other"), "ADDED")
    backend = backend_for(tmp_path)
    assert await backend.sweep() == 2
    await backend.close()
    assert [j["metadata"]["name"] for j in double.items("jobs")] == ["other-install-1"]


@pytest.mark.parametrize(
    ("modes", "pinned"), [(["ReadWriteOnce"], True), (["ReadWriteMany"], False)], ids=["rwo", "rwx"]
)
async def test_jobs_are_pinned_to_mis_node_for_a_node_local_claim(
    double: KubeDouble, tmp_path: Path, modes: list[str], pinned: bool
) -> None:
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "payload", "namespace": "mis-test"},
        "spec": {"accessModes": modes},
    }
    double.call(double.put, "persistentvolumeclaims", "mis-test", claim, "ADDED")
    backend = backend_for(tmp_path, host_path="", claim_name="payload", node_name="node-7")
    options = await backend.job_options()
    await backend.close()
    assert options.namespace == "mis-test"
    assert options.node_name == ("node-7" if pinned else "")


async def test_rbac_refusal_is_backend_unavailable_with_a_hint(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.forbidden.add(("jobs", "create"))
    backend = backend_for(tmp_path)
    with pytest.raises(BackendUnavailable, match="Check the Role bound to its service account"):
        await backend.run(request_in(tmp_path), JobProgress())
    await backend.close()


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


async def test_a_refused_watch_is_backend_unavailable_not_a_crash(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.behaviour = kubelet.hangs()
    double.forbidden.add(("pods", "watch"))
    backend = backend_for(tmp_path)
    with anyio.fail_after(10), pytest.raises(BackendUnavailable, match="Watching pods failed: 403"):
        await backend.run(request_in(tmp_path), JobProgress())
    await backend.close()
    assert double.items("jobs") == []  # and the Job was still removed
