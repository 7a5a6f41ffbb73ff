"""The MIS image, run the way the chart runs it: the chart's Deployment pod spec, as a kubelet
would apply it, with Podman.

`helm template` renders the chart with its default values (the image under test, a hostPath
payload folder owned by uid 10001 as deploy/helm/README.md says), and tests/k8s/podman_pod.py
turns the pod spec into a container: uid/gid 10001, read-only root filesystem with the chart's
emptyDir at /tmp, every capability dropped, no new privileges, the ConfigMap's mis.yaml at
/etc/mis, the 1Gi memory limit, and no network (the tests reach port 8000 as `kubectl
port-forward` would). One change to the chart's pod: MIS_BACKEND=process, because no API server
is reachable from inside it; the chart's default MAP (the example, inside this image) then runs
as MIS's child process, as the chart's values declare its command.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import yaml

from tests.docker.engine import Engine
from tests.harness.unavailable import require_root, require_tool
from tests.harness.wait import wait_until
from tests.images.conftest import entries, post_study
from tests.images.portforward import port_forward
from tests.k8s import podman_pod

# The first test of a run also waits for the images to be built (a few minutes).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
CHART = Path(__file__).parents[2] / "deploy" / "helm" / "monai-inference-service"
RELEASE, NAMESPACE = "mis", "radiology"


@attrs.frozen
class RunningPod:
    name: str
    url: str
    pid: int
    engine: Engine

    def exec(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.engine.podman.argv, "exec", self.name, *command],
            env=dict(self.engine.podman.env),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def proc(self, name: str) -> str:
        return Path(f"/proc/{self.pid}/{name}").read_text()


def render_chart(image: str, payload: Path) -> list[dict[str, Any]]:
    repository, tag = image.rsplit(":", 1)
    result = subprocess.run(
        [
            require_tool("helm"), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
            "--set", f"payload.hostPath={payload}",
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str, hook: bool = False) -> dict[str, Any]:
    [doc] = [
        d
        for d in docs
        if d["kind"] == kind
        and ("helm.sh/hook" in (d["metadata"].get("annotations") or {})) == hook
    ]
    return doc


def image_user(engine: Engine, image: str) -> str:
    return engine.podman.run(
        "image", "inspect", "--format", "{{.Config.User}}", image, capture=True
    ).strip()


def start(engine: Engine, args: list[str]) -> None:
    engine.podman.run("create", *args, capture=True)
    engine.podman.run("start", args[args.index("--name") + 1], capture=True)


@pytest.fixture(scope="module")
def chart(images: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    require_root("a payload folder owned by uid 10001, and entering the pod's network namespace")
    payload = tmp_path_factory.mktemp("hostpath") / "payload"
    payload.mkdir(mode=0o700)
    os.chown(payload, 10001, 10001)  # sudo install -d -o 10001 -g 10001, as the chart's README says
    return render_chart(images["mis"], payload)


@pytest.fixture(scope="module")
def mis_pod(
    chart: list[dict[str, Any]],
    engine: Engine,
    images: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningPod]:
    template = find(chart, "Deployment")["spec"]["template"]
    config_map = find(chart, "ConfigMap")
    pod = {
        "metadata": {
            "name": f"{RELEASE}-monai-inference-service-0",
            "namespace": NAMESPACE,
            "uid": str(uuid.uuid4()),
        },
        "spec": template["spec"],
    }
    container = pod["spec"]["containers"][0]
    container["env"] = [*container.get("env", []), {"name": "MIS_BACKEND", "value": "process"}]
    folders = podman_pod.volume_folders(
        pod["spec"],
        tmp_path_factory.mktemp("mis-pod"),
        config_maps={config_map["metadata"]["name"]: config_map["data"]},
    )
    args = podman_pod.create_args(pod, folders, image_user(engine, images["mis"]))
    name = pod["metadata"]["name"]
    start(engine, args)
    try:
        pid = int(engine.podman.run("inspect", "--format", "{{.State.Pid}}", name, capture=True))
        with port_forward(pid, 8000) as port:
            running = RunningPod(name, f"http://127.0.0.1:{port}", pid, engine)
            wait_until(lambda: _answers(running), 30, "MIS in its container to answer /healthz")
            yield running
    finally:
        logs = engine.podman.run("logs", name, capture=True, check=False)
        engine.podman.run("rm", "--force", "--time", "2", name, capture=True, check=False)
        print(logs)


def _answers(pod: RunningPod) -> bool:
    state = pod.engine.podman.run(
        "inspect", "--format", "{{.State.Status}}", pod.name, capture=True
    )
    assert state.strip() == "running", f"the MIS container is {state.strip()}"
    try:
        return httpx.get(f"{pod.url}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_it_is_healthy_and_ready_as_uid_10001_read_only_without_capabilities_or_network(
    mis_pod: RunningPod,
) -> None:
    assert httpx.get(f"{mis_pod.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{mis_pod.url}/readyz")
    assert ready.status_code == 200, ready.text

    status = dict(line.split(":", 1) for line in mis_pod.proc("status").splitlines())
    assert status["Uid"].split() == ["10001"] * 4
    assert status["Gid"].split() == ["10001"] * 4
    assert int(status["CapEff"], 16) == 0
    assert int(status["CapPrm"], 16) == 0
    assert status["NoNewPrivs"].strip() == "1"
    interfaces = [line.split(":")[0].strip() for line in mis_pod.proc("net/dev").splitlines()[2:]]
    assert interfaces == ["lo"]

    root = mis_pod.exec("python", "-c", "open('/app/written', 'w')")
    assert root.returncode != 0
    assert "Read-only file system" in root.stderr
    tmp = mis_pod.exec("python", "-c", "open('/tmp/written', 'w').write('ok')")
    assert tmp.returncode == 0, tmp.stderr


def test_a_full_inference_of_the_sample_study_matches_the_process_backend(
    mis_pod: RunningPod, sample_study: bytes, reference_output: dict[str, bytes]
) -> None:
    response = post_study(mis_pod.url, sample_study)
    assert response.status_code == 200, response.text
    assert entries(response.content) == reference_output
    status = httpx.get(f"{mis_pod.url}/v1/status").json()
    assert status["state"] == "idle"
    assert status["map"]["command"][:2] == ["python3", "/app/examples/dicom_stats/app.py"]


def test_the_charts_helm_test_hook_passes_against_it(
    chart: list[dict[str, Any]],
    mis_pod: RunningPod,
    engine: Engine,
    images: dict[str, str],
    tmp_path: Path,
) -> None:
    """The hook's own pod (its command, user, limits) in the MIS pod's network, where the
    Service's name resolves to it."""
    hook = find(chart, "Pod", hook=True)
    service = find(chart, "Service")
    assert service["spec"]["ports"][0]["port"] == 8000  # the port the hook's URL names
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost {service['metadata']['name']}\n")
    hosts.chmod(0o644)
    folders = podman_pod.volume_folders(hook["spec"], tmp_path)
    args = podman_pod.create_args(
        hook,
        folders,
        image_user(engine, images["mis"]),
        network=f"container:{mis_pod.name}",
        extra=["--volume", f"{hosts}:/etc/hosts:ro"],
    )
    name = hook["metadata"]["name"]
    engine.podman.run("create", *args, capture=True)
    try:
        result = subprocess.run(
            [*engine.podman.argv, "start", "--attach", name],
            env=dict(engine.podman.env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        code = int(
            engine.podman.run("inspect", "--format", "{{.State.ExitCode}}", name, capture=True)
        )
    finally:
        engine.podman.run("rm", "--force", name, capture=True, check=False)
    assert code == 0, result.stdout + result.stderr
    url = f"http://{service['metadata']['name']}:8000/healthz"
    assert result.stdout.split(maxsplit=2)[:2] == [url, "200"]
    assert json.loads(result.stdout.split(maxsplit=2)[2]) == {"status": "ok"}
