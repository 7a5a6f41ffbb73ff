"""MIS with the Kubernetes backend, end to end: HTTP in, Job in the API double, zip out.

The double's kubelet runs the Job's container command as a local process with the Job's
volume mounts mapped onto the hostPath payload folder, so a round trip only succeeds when
the mounts, subPaths and environment the Job declares match where MIS put the files.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.server import raw_request, zip_post
from tests.harness.servers import Server, ServerFactory
from tests.harness.wait import wait_until
from tests.k8s import kubelet
from tests.k8s.double import KubeDouble
from tests.k8s.mis_e2e import INPUT, post
from tests.processes import is_alive
from tests.zips import make_zip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeDouble, Path]]:
    tmp = tmp_path_factory.mktemp("k8s-e2e")
    double = KubeDouble(kubelet.runs_locally()).start()
    try:
        yield double, double.kubeconfig(tmp / "kubeconfig")
    finally:
        double.stop()


@pytest.fixture(scope="module")
def server(
    cluster: tuple[KubeDouble, Path],
    tmp_path_factory: pytest.TempPathFactory,
    mis_server: ServerFactory,
) -> Iterator[Server]:
    _, kubeconfig = cluster
    tmp = tmp_path_factory.mktemp("k8s-mis")
    with mis_server(tmp, backend="kubernetes", kubeconfig=kubeconfig) as running:
        yield running


@pytest.fixture(autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "server" in request.fixturenames:
        server: Server = request.getfixturevalue("server")
        double, _ = request.getfixturevalue("cluster")
        wait_until(lambda: server.leftovers() == [], 5, "the payload folder to be empty")
        wait_until(
            lambda: double.items("jobs") == [] and double.items("pods") == [], 5, "no jobs or pods"
        )


def test_round_trip_through_a_job_uses_the_mounts_it_declares(
    server: Server, tmp_path: Path
) -> None:
    response = post(server, INPUT, tmp_path)
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        outputs = {n: zf.read(n) for n in zf.namelist()}
    assert {k: outputs[k] for k in INPUT} == INPUT
    request_id = response.headers["x-request-id"]
    workspace = server.payload_dir / request_id
    env = json.loads(outputs["_env.json"])
    # the container saw /var/monai/input; the kubelet mapped it through the Job's subPath
    assert env["MONAI_INPUTPATH"] == str(workspace / "input")
    assert env["MONAI_OUTPUTPATH"] == str(workspace / "output")
    assert json.loads(outputs["_argv.json"]) == [
        "-i",
        str(workspace / "input"),
        "-o",
        str(workspace / "output"),
    ]
    assert any(
        request_id in line and "scripted MAP done" in line
        for line in server.log_text().splitlines()
    )


def test_map_failure_reports_exit_code_and_log(server: Server, tmp_path: Path) -> None:
    response = post(server, INPUT, tmp_path, mode="fail")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "map_failed"
    assert "exited with code 3" in error["message"]
    assert "error: the model could not be loaded" in error["message"]


def test_timeout_deletes_the_job_and_its_pod(
    server: Server, tmp_path: Path, cluster: tuple[KubeDouble, Path]
) -> None:
    double, _ = cluster
    pidfile = Path(
        yaml.safe_load((server.log.parent / "mis.yaml").read_text())["map"]["env"][
            "MIS_TEST_PIDFILE"
        ]
    )
    pidfile.unlink(missing_ok=True)
    response = post(server, INPUT, tmp_path, mode="hang")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "timeout"
    assert double.items("jobs") == []
    assert double.items("pods") == []  # MIS waited for the pod before deleting the workspace
    for pid in (int(p) for p in pidfile.read_text().split()):
        assert not is_alive(pid)


def test_client_disconnect_deletes_the_job(
    server: Server, tmp_path: Path, cluster: tuple[KubeDouble, Path]
) -> None:
    double, _ = cluster
    body = make_zip(tmp_path / "in.zip", {**INPUT, "_mode": b"hang"}).read_bytes()
    with raw_request(server, zip_post(body)):
        wait_until(lambda: any(double.logs.values()), 10, "the MAP to start in its pod")
    wait_until(lambda: double.items("jobs") == [], 5, "the job to be deleted")
    wait_until(
        lambda: httpx.get(f"{server.url}/v1/status").json()["state"] == "idle", 5, "the slot"
    )


def test_the_job_is_labelled_with_the_clients_request_id_and_found_by_mis_own_id(
    server: Server, tmp_path: Path, cluster: tuple[KubeDouble, Path]
) -> None:
    double, _ = cluster
    body = make_zip(tmp_path / "in.zip", {**INPUT, "_mode": b"hang"}).read_bytes()
    head, rest = zip_post(body).split(b"\r\n", 1)
    with raw_request(server, head + b"\r\nX-Request-ID: study-0042\r\n" + rest):
        wait_until(lambda: double.items("jobs") != [], 10, "the Job to be created")
        [job] = double.items("jobs")
        [workspace] = server.leftovers()
    labels = job["metadata"]["labels"]
    job_id = labels["mis.monai.io/job-id"]
    assert labels["mis.monai.io/request-id"] == "study-0042"
    assert re.fullmatch("[0-9a-f]{32}", job_id)
    assert job_id == workspace  # MIS's own id: its workspace and its Job
    assert job["metadata"]["name"] == f"mis-{job_id}"
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert {"name": "MONAI_JOBID", "value": job_id} in container["env"]
    wait_until(lambda: double.items("jobs") == [], 5, "the Job to be deleted")


def test_readiness_when_the_api_answers(server: Server) -> None:
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_api_server_down_is_503(tmp_path: Path, mis_server: ServerFactory) -> None:
    down = KubeDouble()
    down.port = 1  # nothing listens there
    kubeconfig = down.kubeconfig(tmp_path / "kubeconfig")
    with mis_server(tmp_path, backend="kubernetes", kubeconfig=kubeconfig) as server:
        ready = httpx.get(f"{server.url}/readyz")
        response = post(server, INPUT, tmp_path)
        server.wait_until_clean()
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "backend_unavailable"
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "backend_unavailable"
    assert "cannot be reached" in response.json()["error"]["message"]


def test_orphan_jobs_are_swept_at_start(tmp_path: Path, mis_server: ServerFactory) -> None:
    double = KubeDouble(kubelet.hangs()).start()
    try:
        labels = {
            "app.kubernetes.io/managed-by": "monai-inference-service",
            "app.kubernetes.io/instance": "mis",
        }
        orphan = {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": "mis-orphan",
                "namespace": "mis-test",
                "labels": labels,
                "uid": "u1",
            },
            "spec": {"template": {"metadata": {}, "spec": {"containers": []}}},
        }
        double.call(double.put, "jobs", "mis-test", orphan, "ADDED")
        kubeconfig = double.kubeconfig(tmp_path / "kubeconfig")
        with mis_server(tmp_path, backend="kubernetes", kubeconfig=kubeconfig) as server:
            assert "swept 0 leftover workspace(s) and 1 leftover job(s)" in server.log_text()
        assert double.items("jobs") == []
    finally:
        double.stop()
