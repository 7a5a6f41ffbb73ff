"""The Kubernetes backend: kubernetes-asyncio talking real HTTP to the API double."""

from __future__ import annotations

import hashlib
from contextlib import aclosing
from pathlib import Path

import anyio
import pytest
from loguru import logger

from mis_adapters.kubernetes.backend import KubernetesJobBackend
from mis_adapters.map_follow import LOG_TAIL_LINES, MAX_LINE
from mis_app import bootstrap
from mis_core.errors import BackendUnavailable, JobTimedOut
from mis_core.model import JobProgress
from mis_core.service import InferenceService
from tests.built import settings
from tests.k8s import kubelet
from tests.k8s.double import Call, KubeDouble
from tests.k8s.helpers import (
    SPEC,
    backend_for,
    cancel_once_following_the_log,
    request_in,
    run,
    wait_for_calls,
)

pytestmark = pytest.mark.anyio


def map_lines() -> tuple[list[str], int]:
    """The MAP's log lines as MIS logs them, while the block runs (a sink id to remove)."""
    lines: list[str] = []
    sink = logger.add(
        lambda m: lines.append(m.record["message"]),
        filter=lambda r: r["extra"].get("source") == "map",
    )
    return lines, sink


async def test_success_streams_the_log_and_deletes_the_job(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.behaviour = kubelet.finishes(0, lines=["loading model", "segmenting 3 slices", "done"])
    backend = backend_for(tmp_path)
    lines, sink = map_lines()
    try:
        outcome = await run(backend, request_in(tmp_path))
    finally:
        logger.remove(sink)
        await backend.close()

    assert outcome.succeeded
    image = SPEC.image  # as the node resolved it: a digest
    assert outcome.image_id == f"{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"
    assert lines == ["loading model", "segmenting 3 slices", "done"]
    assert double.items("jobs") == []
    assert double.count("batch", "jobs", "create") == 1
    assert double.count("batch", "jobs", "delete") == 1


async def test_a_huge_log_line_is_logged_in_pieces_and_quoted_cut(
    double: KubeDouble, tmp_path: Path
) -> None:
    """One MAP-log follower for every backend: a 200,000-character line is cut at MAX_LINE."""
    huge = "".join(chr(ord("a") + n % 26) for n in range(200_000))
    double.behaviour = kubelet.finishes(3, "Error", lines=["before", huge, "after"])
    backend = backend_for(tmp_path)
    lines, sink = map_lines()
    try:
        outcome = await run(backend, request_in(tmp_path))
    finally:
        logger.remove(sink)
        await backend.close()

    assert max(len(line) for line in lines) == MAX_LINE
    assert lines[0] == "before"
    assert lines[-1] == "after"
    assert "".join(lines[1:-1]) == huge  # nothing lost, nothing reordered
    assert len(lines) == 2 + -(-len(huge) // MAX_LINE)
    assert max(len(line) for line in outcome.log_tail) == MAX_LINE  # the message's tail too
    assert outcome.log_tail[-1] == "after"


async def test_the_namespace_comes_from_the_kubeconfig_context(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.behaviour = kubelet.finishes(0)
    backend = backend_for(tmp_path)  # no namespace configured
    assert (await run(backend, request_in(tmp_path))).succeeded
    await backend.close()
    jobs = [call for call in double.requests if call.resource == "jobs"]
    assert Call("batch", "jobs", "create", "mis-test") in jobs
    assert {call.namespace for call in double.requests if call.namespace} == {"mis-test"}


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
    assert len(outcome.log_tail) == LOG_TAIL_LINES
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
    outcome = await run(backend, request_in(tmp_path))  # an outcome: the pod's, not a timeout
    await backend.close()
    assert not outcome.succeeded
    assert "could not get its image example/map:1 (ErrImagePull" in outcome.reason
    assert double.items("jobs") == []


def service_with(backend: KubernetesJobBackend, tmp_path: Path, timeout: float) -> InferenceService:
    payload = str(tmp_path / "payload")
    configured = settings(
        backend="kubernetes",
        server={"payload_dir": payload},
        map={"image": "example/map:1", "timeout_seconds": timeout, "resources": {"gpu": 1}},
        kubernetes={"payload_volume": {"host_path": payload}},
    )
    return bootstrap.build_service(configured, jobs=backend)


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


async def test_cancelling_deletes_the_job_and_waits_for_the_pod(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.behaviour = kubelet.hangs()
    double.pod_deletion_seconds = 0.3  # the pod lingers while it terminates
    backend = backend_for(tmp_path)
    await cancel_once_following_the_log(backend, request_in(tmp_path), double)
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

    async def vanish_once_mis_watches_the_pod_go() -> None:
        await wait_for_calls(double, "batch", "jobs", "delete")
        watches = double.count("", "pods", "watch")  # the follower's, before the deletion
        await wait_for_calls(double, "", "pods", "watch", watches + 1)
        await anyio.to_thread.run_sync(double.call, vanish_unseen)

    backend = backend_for(tmp_path)
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        async with anyio.create_task_group() as side:
            side.start_soon(vanish_once_mis_watches_the_pod_go)
            await cancel_once_following_the_log(backend, request_in(tmp_path), double)
    finally:
        logger.remove(sink)
        await backend.close()
    assert not [w for w in warnings if "still there" in w]  # the listing answered, not the bound
    assert double.items("pods") == []


async def test_dropped_and_expired_watches_are_resumed(double: KubeDouble, tmp_path: Path) -> None:
    finish = kubelet.finishes(0, lines=["late result"])

    async def disrupted(kube: KubeDouble, ns: str, job: dict, pod: str) -> None:
        await kube.calls_made("", "pods", "watch")  # MIS's watches have started
        await kube.calls_made("batch", "jobs", "watch")
        lists = kube.count("", "pods", "list")
        kube.drop_watches()
        kube.compact()  # and the version they would resume from is gone: 410
        await kube.calls_made("", "pods", "list", lists + 1)  # 410 Gone, and listed again
        await finish(kube, ns, job, pod)

    double.behaviour = disrupted
    backend = backend_for(tmp_path)
    outcome = await run(backend, request_in(tmp_path))
    await backend.close()
    assert outcome.succeeded


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
    backend = backend_for(tmp_path, payload_volume={"claim_name": "payload"}, node_name="node-7")
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
