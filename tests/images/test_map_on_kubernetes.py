"""The example MAP image through MIS's Kubernetes backend: HTTP in, a Job in the API double, a
real container run by the double's Podman kubelet, the output back.

As the chart deploys it: MIS runs as uid/gid 10001 (tests/nonroot.py), and so do its Jobs
(runAsNonRoot, fsGroup 10001, read-only root filesystem, no capabilities), with the image's
own entrypoint, the payload volume's subPath mounts and MIS's environment: a wrong mount, user,
permission, path or variable fails here as it would on a cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tests.docker.engine import Engine
from tests.harness.servers import Server, mis_server
from tests.harness.wait import wait_until
from tests.images.conftest import entries, post_study
from tests.k8s import kubelet
from tests.k8s.double import KubeDouble
from tests.nonroot import NonRoot

# The first test of a run also waits for the images to be built (a few minutes).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
CHART_POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CHART_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


@pytest.fixture(scope="module")
def cluster(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeDouble]:
    tmp = tmp_path_factory.mktemp("podman-kubelet")
    double = KubeDouble(kubelet.runs_in_podman(engine.podman, tmp / "pods")).start()
    try:
        yield double
    finally:
        double.stop()


@pytest.fixture
def work(nonroot: NonRoot) -> Path:
    """This test's folder, MIS's user's own: its configuration, log and payload volume."""
    return nonroot.workdir("k8s")


def kubernetes_config(work: Path, image: str, **map_settings: Any) -> dict[str, Any]:
    payload = work / "payload"
    return {
        "backend": "kubernetes",
        "server": {"payload_dir": str(payload)},
        "map": {
            "image": image,
            "resources": {"cpu": "1", "memory": "1Gi"},
            "timeout_seconds": 60,
            **map_settings,
        },
        "kubernetes": {
            "payload_volume": {"host_path": str(payload)},
            "delete_wait_seconds": 10,
            "pod_security_context": CHART_POD_SECURITY,
            "security_context": CHART_SECURITY,
        },
    }


def serving(double: KubeDouble, work: Path, nonroot: NonRoot, config: dict[str, Any]) -> Any:
    """MIS as uid 10001, talking to the double."""
    kubeconfig = double.kubeconfig(work / "kubeconfig")
    return mis_server(work, config=config, kubeconfig=kubeconfig, nonroot=nonroot)


def nothing_left(server: Server, double: KubeDouble, engine: Engine) -> None:
    wait_until(lambda: server.leftovers() == [], 10, "the workspace to be deleted")
    wait_until(lambda: double.items("pods") == [], 10, "the pod to be deleted")
    wait_until(lambda: engine.containers() == [], 10, "the container to be removed")


@attrs.frozen
class Deployment:
    """MIS as the chart runs it, against the double and its Podman kubelet."""

    double: KubeDouble
    nonroot: NonRoot
    engine: Engine
    work: Path
    study: bytes

    def failure(self, config: dict[str, Any]) -> str:
        """Send the study once; the run must fail as `map_failed` and leave nothing behind.
        Returns the error's message."""
        with serving(self.double, self.work, self.nonroot, config) as server:
            response = post_study(server.url, self.study)
            nothing_left(server, self.double, self.engine)
        assert response.status_code == 500, response.text
        error = response.json()["error"]
        assert error["code"] == "map_failed"
        return str(error["message"])


@pytest.fixture
def deployment(
    cluster: KubeDouble, nonroot: NonRoot, engine: Engine, work: Path, sample_study: bytes
) -> Deployment:
    return Deployment(cluster, nonroot, engine, work, sample_study)


def test_the_sample_study_through_a_job_matches_the_process_backend(
    cluster: KubeDouble,
    nonroot: NonRoot,
    engine: Engine,
    images: dict[str, str],
    sample_study: bytes,
    reference_output: dict[str, bytes],
    work: Path,
) -> None:
    double = cluster
    with serving(double, work, nonroot, kubernetes_config(work, images["map"])) as server:
        response = post_study(server.url, sample_study)
        assert response.status_code == 200, response.text
        assert entries(response.content) == reference_output
        request_id = response.headers["X-Request-ID"]
        assert f"{request_id} | map | wrote summary of 2 series" in server.log_text()
        nothing_left(server, double, engine)
    job = [obj for _, kind, change, obj in double.history if kind == "jobs" and change == "ADDED"][
        -1
    ]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in container  # the image's own entrypoint ran


def test_the_input_mount_is_read_only_as_the_job_declares(
    deployment: Deployment, images: dict[str, str]
) -> None:
    config = kubernetes_config(
        deployment.work,
        images["map"],
        command=["python3", "-c", "import os; open(os.environ['MONAI_INPUTPATH'] + '/x', 'w')"],
    )
    assert "Read-only file system: '/var/monai/input/x'" in deployment.failure(config)


def test_a_policy_that_makes_the_output_mount_read_only_fails_with_a_clear_map_failed(
    deployment: Deployment, images: dict[str, str]
) -> None:
    def read_only_mounts(resource: str, obj: dict[str, Any]) -> None:
        if resource == "jobs":
            for container in obj["spec"]["template"]["spec"]["containers"]:
                for mount in container.get("volumeMounts", []):
                    mount["readOnly"] = True

    deployment.double.admission = read_only_mounts
    try:
        message = deployment.failure(kubernetes_config(deployment.work, images["map"]))
    finally:
        deployment.double.admission = None
    assert "exited with code 1" in message
    assert "Read-only file system" in message


def test_run_as_non_root_with_the_root_user_is_refused_before_the_map_runs(
    deployment: Deployment, images: dict[str, str]
) -> None:
    config = kubernetes_config(deployment.work, images["map"])
    config["kubernetes"]["pod_security_context"] = {**CHART_POD_SECURITY, "runAsUser": 0}
    message = deployment.failure(config)
    assert "CreateContainerConfigError" in message
    assert "runAsNonRoot and image will run as root" in message


def test_a_map_over_its_memory_limit_ends_oomkilled(
    deployment: Deployment, images: dict[str, str]
) -> None:
    config = kubernetes_config(
        deployment.work,
        images["map"],
        command=["python3", "-c", "print('allocating', flush=True); b = bytearray(512 * 2**20)"],
        resources={"cpu": "1", "memory": "64Mi"},
    )
    message = deployment.failure(config)
    assert "OOMKilled" in message
    assert "allocating" in message  # the log's last lines


def test_a_timeout_deletes_the_job_and_removes_the_container(
    cluster: KubeDouble,
    nonroot: NonRoot,
    engine: Engine,
    images: dict[str, str],
    sample_study: bytes,
    work: Path,
) -> None:
    double = cluster
    config = kubernetes_config(
        work,
        images["map"],
        command=["python3", "-c", "import time; print('working', flush=True); time.sleep(600)"],
        timeout_seconds=3,
    )
    with serving(double, work, nonroot, config) as server:
        response = post_study(server.url, sample_study)
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "timeout"
        assert double.items("pods") == []  # MIS waited for the pod (and so its container) to go
        assert engine.containers() == []
        nothing_left(server, double, engine)
