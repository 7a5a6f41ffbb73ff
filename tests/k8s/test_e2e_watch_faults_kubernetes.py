"""MIS over HTTP while the cluster misbehaves: silent watches, a Job deleted by `kubectl`, a pod
evicted by its kubelet, a log that cannot be read. MIS runs as its own process; the double's
kubelet runs the Job's command as a local process (see test_e2e_kubernetes.py).
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.harness.servers import Server, ServerFactory
from tests.harness.wait import wait_until
from tests.k8s import kubelet
from tests.k8s.double import KubeDouble
from tests.k8s.mis_e2e import INPUT, post
from tests.k8s.watch_faults import LOW_MEMORY, client_delete, evict

REPORT_BOUND = 5  # seconds from a deletion or an eviction to the answer
SILENCE_BOUND = 10  # seconds silent watches may add to a study


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeDouble]:
    double = KubeDouble(kubelet.runs_locally()).start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture(scope="module")
def server(
    cluster: KubeDouble, tmp_path_factory: pytest.TempPathFactory, mis_server: ServerFactory
) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("k8s-faults-mis")
    kubeconfig = cluster.kubeconfig(tmp / "kubeconfig")
    overrides = {"map": {"timeout_seconds": 60}}
    with mis_server(tmp, overrides, backend="kubernetes", kubeconfig=kubeconfig) as running:
        yield running


@pytest.fixture(autouse=True)
def faults_cleared_and_nothing_left(cluster: KubeDouble, server: Server) -> Iterator[None]:
    yield
    cluster.streams.clear()
    wait_until(lambda: server.leftovers() == [], 5, "the payload folder to be empty")
    wait_until(
        lambda: cluster.items("jobs") == [] and cluster.items("pods") == [], 5, "no jobs or pods"
    )


def outputs(response: httpx.Response) -> dict[str, bytes]:
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        return {name: zf.read(name) for name in zf.namelist() if name in INPUT}


def timed_post(server: Server, tmp_path: Path, mode: str = "") -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = post(server, INPUT, tmp_path, mode)
    return response, time.monotonic() - started


def resyncs(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mis_kubernetes_watch_resyncs_total{")
    )


def test_silent_watches_cost_a_study_seconds_not_its_timeout(
    server: Server, cluster: KubeDouble, tmp_path: Path
) -> None:
    """The study's Job and pod watches are silent from their start and never close (a load
    balancer dropped them); watches opened later speak."""
    _, baseline = timed_post(server, tmp_path)
    before = resyncs(server)
    watches = [("batch", "jobs"), ("", "pods")]
    opened = [cluster.count(group, kind, "watch") for group, kind in watches]
    cluster.streams.silence("jobs", "pods")
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(timed_post, server, tmp_path)
        for (group, kind), count in zip(watches, opened, strict=True):
            cluster.wait_for_calls(group, kind, "watch", count + 1)
        cluster.call(cluster.streams.speak, "jobs", "pods")  # on its loop: after they opened
        response, silent = answer.result(30)
    print(f"cost: e2e silent watches: {silent - baseline:.2f}s (baseline {baseline:.2f}s)")
    assert outputs(response) == INPUT
    assert sum(cluster.streams.withheld.values()) > 0
    assert silent - baseline < SILENCE_BOUND
    assert resyncs(server) > before  # and the metrics say so


def while_the_map_runs(
    server: Server, cluster: KubeDouble, tmp_path: Path, fault: Callable[[], None]
) -> tuple[httpx.Response, float]:
    """Post a MAP that hangs; once it runs in its pod, `fault()`: the answer and the seconds
    from the fault to it."""
    with ThreadPoolExecutor(1) as pool:
        answer: Future[httpx.Response] = pool.submit(post, server, INPUT, tmp_path, "hang")
        wait_until(
            lambda: any(cluster.logs.get(pod["metadata"]["name"]) for pod in cluster.items("pods")),
            10,
            "the MAP to start in its pod",
        )
        started = time.monotonic()
        fault()
        response = answer.result(30)
        seconds = time.monotonic() - started
    return response, seconds


def test_a_job_deleted_with_kubectl_is_map_failed_at_once(
    server: Server, cluster: KubeDouble, tmp_path: Path
) -> None:
    def delete() -> None:
        client_delete(cluster, "jobs", cluster.items("jobs")[0]["metadata"]["name"])

    response, seconds = while_the_map_runs(server, cluster, tmp_path, delete)
    print(f"cost: e2e Job deleted, to the answer: {seconds:.2f}s")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "map_failed"
    assert "it ran in a Job that was deleted outside MIS before it finished" in error["message"]
    assert seconds < REPORT_BOUND


def test_a_pod_evicted_by_its_kubelet_is_map_failed_naming_the_reason(
    server: Server, cluster: KubeDouble, tmp_path: Path
) -> None:
    def evict_it() -> None:
        cluster.call(evict, cluster, "mis-test", cluster.items("pods")[0]["metadata"]["name"])

    response, seconds = while_the_map_runs(server, cluster, tmp_path, evict_it)
    print(f"cost: e2e pod evicted, to the answer: {seconds:.2f}s")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "map_failed"
    assert f"evicted by its node's kubelet (Evicted: {LOW_MEMORY})" in error["message"]
    assert seconds < REPORT_BOUND


def test_a_log_that_cannot_be_read_still_returns_the_output(
    server: Server, cluster: KubeDouble, tmp_path: Path
) -> None:
    _, baseline = timed_post(server, tmp_path)
    cluster.streams.refuse("pods/log", 500)
    response, refused = timed_post(server, tmp_path)
    print(f"cost: e2e log refused: {refused - baseline:.2f}s (baseline {baseline:.2f}s)")
    assert outputs(response) == INPUT
    request_id = response.headers["x-request-id"]
    assert any(
        request_id in line and "the MAP's log could not be read" in line
        for line in server.log_text().splitlines()
    )
    assert refused - baseline < 3
