"""An API outage as a client of MIS meets it: /readyz, a study through it, one cut short.

MIS runs as a server with the Kubernetes backend on the API double; the double resets
every call for the outage's length and cuts its open watches as it starts (`faults.py`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness.servers import Server, ServerFactory
from tests.harness.wait import wait_until
from tests.k8s import kubelet
from tests.k8s.double import KubeDouble
from tests.k8s.mis_e2e import INPUT, post

TIMEOUT = 4  # the MAP's timeout: the outages below are shorter and longer than it


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, mis_server: ServerFactory
) -> Iterator[tuple[KubeDouble, Server]]:
    tmp = tmp_path_factory.mktemp("k8s-outage")
    double = KubeDouble(kubelet.runs_locally()).start()
    overrides = {"map": {"timeout_seconds": TIMEOUT}, "kubernetes": {"api_retry_max_seconds": 1}}
    kubeconfig = double.kubeconfig(tmp / "kubeconfig")
    try:
        with mis_server(tmp, overrides, backend="kubernetes", kubeconfig=kubeconfig) as server:
            yield double, server
    finally:
        double.stop()


@pytest.fixture(autouse=True)
def outage_over(cluster: tuple[KubeDouble, Server]) -> Iterator[None]:
    yield
    double, server = cluster
    double.faults.outage_until = 0
    wait_until(lambda: double.items("jobs") == [], 5, "no jobs")
    server.wait_until_clean()


def ready(server: Server) -> httpx.Response:
    return httpx.get(f"{server.url}/readyz", timeout=5)


def test_readyz_reports_an_outage_while_it_lasts_and_recovers(
    cluster: tuple[KubeDouble, Server],
) -> None:
    double, server = cluster
    assert ready(server).status_code == 200
    double.faults.outage(3)
    first = ready(server)
    assert first.status_code == 503
    assert first.json()["error"]["code"] == "backend_unavailable"
    assert "cannot be reached" in first.json()["error"]["message"]
    wait_until(lambda: "did not answer for" in ready(server).text, 5, "the outage's length")
    wait_until(lambda: ready(server).status_code == 200, 10, "readiness after the outage")
    late = time.monotonic() - double.faults.outage_until
    print(f"/readyz was 200 again {late:.2f} s after the outage ended")
    assert late < 1


def test_a_study_through_an_outage_shorter_than_its_timeout_succeeds(
    cluster: tuple[KubeDouble, Server], tmp_path: Path
) -> None:
    double, server = cluster
    started = time.monotonic()
    baseline = post(server, INPUT, tmp_path)
    calm = time.monotonic() - started
    assert baseline.status_code == 200
    double.faults.outage(2)
    started = time.monotonic()
    response = post(server, INPUT, tmp_path)
    cost = time.monotonic() - started - calm
    assert response.status_code == 200, response.text
    print(f"a 2 s outage as the study started cost it {cost:.2f} s")
    assert cost < 3
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'mis_kubernetes_api_retries_total{reason="connection",verb="create"}' in metrics


def test_an_outage_longer_than_the_timeout_is_503_naming_it(
    cluster: tuple[KubeDouble, Server], tmp_path: Path
) -> None:
    double, server = cluster
    double.faults.outage(60)
    started = time.monotonic()
    response = post(server, INPUT, tmp_path)
    took = time.monotonic() - started
    double.faults.outage_until = 0
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "backend_unavailable"
    answered = re.search(r"did not answer for (\d+) s", error["message"])
    assert answered is not None, error["message"]
    assert TIMEOUT - 1 <= int(answered[1]) <= TIMEOUT
    print(f"an outage past a {TIMEOUT} s timeout was answered 503 after {took:.2f} s")
    assert took < TIMEOUT + 1.5  # the timeout, then one clean-up try (api_retry_max_seconds)
