"""Each MIS sweeps only what a dead MIS left: two backends on one namespace of the API double."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from mis_adapters.kubernetes.job import build_job
from mis_adapters.kubernetes.ownership import LABEL_OWNER, Owner
from mis_core.model import JobOutcome
from tests.k8s import kubelet
from tests.k8s.double import KubeDouble
from tests.k8s.helpers import backend_for, pod_of_mis, request_in, run, wait_for_calls

pytestmark = pytest.mark.anyio

FIRST = Owner(pod_name="mis-a", pod_uid="uid-a")
SECOND = Owner(pod_name="mis-b", pod_uid="uid-b")


def put_pod(double: KubeDouble, name: str, uid: str, phase: str = "Running") -> None:
    double.call(double.put, "pods", "mis-test", pod_of_mis(name, uid, phase), "ADDED")


async def test_a_second_mis_starting_leaves_the_first_ones_running_study_alone(
    double: KubeDouble, tmp_path: Path
) -> None:
    put_pod(double, "mis-a", "uid-a")
    gate = threading.Event()
    double.behaviour = kubelet.after(gate, kubelet.finishes(0, lines=["done"]))
    first = backend_for(tmp_path, FIRST)
    second = backend_for(tmp_path, SECOND)
    outcomes: list[JobOutcome] = []

    async def first_study() -> None:
        outcomes.append(await run(first, request_in(tmp_path, "study-1")))

    async with anyio.create_task_group() as tg:
        tg.start_soon(first_study)
        await wait_for_calls(double, "", "pods/log", "get")  # its MAP runs
        assert await second.sweep() == 0  # the second MIS starts (a rolling update, say)
        assert len(double.items("jobs")) == 1
        gate.set()
    await first.close()
    await second.close()
    assert outcomes[0].succeeded


async def test_the_job_a_killed_mis_left_is_swept_by_the_next(
    double: KubeDouble, tmp_path: Path
) -> None:
    put_pod(double, "mis-a", "uid-a")
    first = backend_for(tmp_path, FIRST)
    api = await first.api()
    await api.create_job(
        build_job(request_in(tmp_path, "study-1"), await first.job_options(), FIRST)
    )
    await first.close()
    second = backend_for(tmp_path, SECOND)
    assert await second.sweep() == 0  # while its owner's pod lives
    double.call(double.put, "pods", "mis-test", pod_of_mis("mis-a", "uid-a"), "DELETED")
    assert await second.sweep() == 1  # the owner's pod is gone (MIS was killed, say)
    await second.close()
    assert double.items("jobs") == []


def job(name: str, *, token: str = "", pod: tuple[str, str] | None = None, age: float = 10) -> dict:
    labels = {
        "app.kubernetes.io/managed-by": "monai-inference-service",
        "app.kubernetes.io/instance": "mis",
    }
    if token:
        labels[LABEL_OWNER] = token
    created = datetime.now(UTC) - timedelta(seconds=age)
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": "mis-test",
        "labels": labels,
        "uid": name,
        "creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    if pod:
        metadata["ownerReferences"] = [
            {"apiVersion": "v1", "kind": "Pod", "name": pod[0], "uid": pod[1]}
        ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "activeDeadlineSeconds": 80,
            "template": {"metadata": {}, "spec": {"containers": []}},
        },
    }


async def test_only_jobs_whose_owner_is_dead_are_swept(double: KubeDouble, tmp_path: Path) -> None:
    put_pod(double, "mis-a", "uid-a")  # a live MIS
    put_pod(double, "mis-done", "uid-done", phase="Failed")  # a MIS pod that has stopped
    put_pod(double, "mis-new", "uid-new")  # a new pod with the name of an old one
    me = Owner(token="mine", pod_name="mis-b", pod_uid="uid-b")
    leftovers = [
        job("no-owner"),
        job("dead-pod", token="t1", pod=("mis-gone", "uid-gone")),
        job("stopped-pod", token="t2", pod=("mis-done", "uid-done")),
        job("recreated-pod", token="t3", pod=("mis-new", "uid-old")),
        job("earlier-process-here", token="t4", pod=("mis-b", "uid-b")),
        job("out-of-cluster-expired", token="t5", age=3600),
    ]
    alive = [
        job("live-pod", token="t6", pod=("mis-a", "uid-a")),
        job("out-of-cluster", token="t7"),  # another process's; its liveness is unknown
    ]
    other_installation = job("other-install", token="t8")
    other_installation["metadata"]["labels"]["app.kubernetes.io/instance"] = "other"
    for obj in [*leftovers, *alive, other_installation]:
        double.call(double.put, "jobs", "mis-test", obj, "ADDED")
    backend = backend_for(tmp_path, me)
    assert await backend.sweep() == len(leftovers)
    await backend.close()
    remaining = sorted(j["metadata"]["name"] for j in double.items("jobs"))
    assert remaining == ["live-pod", "other-install", "out-of-cluster"]


async def test_jobs_record_their_owner_for_the_garbage_collector(
    double: KubeDouble, tmp_path: Path
) -> None:
    backend = backend_for(tmp_path, FIRST)
    manifest = build_job(request_in(tmp_path), await backend.job_options(), backend.owner)
    await backend.close()
    assert manifest["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": "mis-a", "uid": "uid-a"}
    ]
    assert manifest["metadata"]["labels"][LABEL_OWNER] == FIRST.token
    assert manifest["spec"]["template"]["metadata"]["labels"][LABEL_OWNER] == FIRST.token
    outside = build_job(request_in(tmp_path), await backend.job_options(), Owner())
    assert "ownerReferences" not in outside["metadata"]  # no pod: nothing to refer to
