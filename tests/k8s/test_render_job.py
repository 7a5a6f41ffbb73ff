"""`mis kubernetes render-job` prints what the backend submits, placement included."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import kubernetes_validate
import pytest
import yaml

from mis_app.bootstrap import kubernetes_backend
from mis_app.settings import load_settings
from mis_core.model import JobProgress
from tests.harness.command import mis_command
from tests.k8s import kubelet
from tests.k8s.double import KubeDouble
from tests.k8s.helpers import request_in
from tests.k8s.pss import pod_of, violations

NODE = "node-3"


def config_file(tmp_path: Path, **volume: Any) -> Path:
    config = {
        "backend": "kubernetes",
        "server": {"payload_dir": str(tmp_path / "payload")},
        "map": {"image": "example/map:1", "resources": {"gpu": 1}},
        "kubernetes": {"payload_volume": volume},
    }
    path = tmp_path / "mis.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def render_job(config: Path, kubeconfig: Path) -> tuple[list[dict[str, Any]], str]:
    """The documents render-job prints, and what it says on stderr."""
    result = mis_command(
        "kubernetes",
        "render-job",
        "--config",
        config,
        env={"PATH": os.environ["PATH"], "NODE_NAME": NODE, "KUBECONFIG": str(kubeconfig)},
    )
    assert result.returncode == 0, result.stderr
    return list(yaml.safe_load_all(result.stdout)), result.stderr


def claim(double: KubeDouble, *modes: str) -> None:
    obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "payload", "namespace": "mis-test"},
        "spec": {"accessModes": list(modes)},
    }
    double.call(double.put, "persistentvolumeclaims", "mis-test", obj, "ADDED")


def pinned_to(job: dict[str, Any]) -> list[str]:
    affinity = job["spec"]["template"]["spec"].get("affinity") or {}
    terms = affinity.get("nodeAffinity", {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution", {}
    )
    return [
        v for t in terms.get("nodeSelectorTerms", []) for f in t["matchFields"] for v in f["values"]
    ]


def submitted_job(
    double: KubeDouble, config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The Job the backend itself creates with the same configuration (and NODE_NAME)."""
    monkeypatch.setenv("NODE_NAME", NODE)
    configured = load_settings(config, {})
    double.behaviour = kubelet.finishes(0)

    async def submit() -> None:
        backend = kubernetes_backend(configured)
        with anyio.fail_after(10):
            assert (await backend.run(request_in(tmp_path), JobProgress())).succeeded
        await backend.close()

    anyio.run(submit)
    [created] = [
        obj for _, kind, change, obj in double.history if kind == "jobs" and change == "ADDED"
    ]
    return created


@pytest.mark.parametrize(
    ("modes", "pinned"), [(["ReadWriteOnce"], [NODE]), (["ReadWriteMany"], [])]
)
def test_render_job_pins_like_the_backend_after_reading_the_claim(
    double: KubeDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    modes: list[str],
    pinned: list[str],
) -> None:
    claim(double, *modes)
    config = config_file(tmp_path, claim_name="payload")
    [job, _], notes = render_job(config, double.kubeconfig(tmp_path / "kubeconfig"))
    assert "the access modes of the claim payload read from the cluster" in notes
    assert pinned_to(job) == pinned
    assert job["metadata"]["namespace"] == "mis-test"  # the kubeconfig's, as the backend's
    submitted = submitted_job(double, config, tmp_path, monkeypatch)
    assert pinned_to(submitted) == pinned
    rendered_pod, submitted_pod = (
        job["spec"]["template"]["spec"],
        submitted["spec"]["template"]["spec"],
    )
    assert submitted_pod.get("affinity") == rendered_pod.get("affinity")
    assert submitted_pod["volumes"] == rendered_pod["volumes"]


def test_render_job_without_a_cluster_says_what_it_assumed(tmp_path: Path) -> None:
    down = KubeDouble()
    down.port = 1  # nothing listens there
    config = config_file(tmp_path, claim_name="payload")
    [job, policy], notes = render_job(config, down.kubeconfig(tmp_path / "kubeconfig"))
    assert "# not read from the cluster: The Kubernetes API server cannot be reached" in notes
    assert "the claim payload was taken as ReadWriteOnce (pinned to MIS's node)" in notes
    assert pinned_to(job) == [NODE]  # what MIS does when it cannot read the claim
    assert job["metadata"]["namespace"] == policy["metadata"]["namespace"] == "default"


def test_render_job_prints_a_restricted_job_and_the_deny_all_policy_for_its_pods(
    double: KubeDouble, tmp_path: Path
) -> None:
    claim(double, "ReadWriteOnce")
    config = config_file(tmp_path, claim_name="payload")
    [job, policy], _ = render_job(config, double.kubeconfig(tmp_path / "kubeconfig"))
    for doc in (job, policy):
        kubernetes_validate.validate(doc, "1.37.0", strict=True)
    assert violations(*pod_of(job), "restricted") == []
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["limits"]["ephemeral-storage"] == "4Gi"
    assert policy["kind"] == "NetworkPolicy"
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == policy["spec"]["egress"] == []
    selected = policy["spec"]["podSelector"]["matchLabels"]
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert selected.items() <= pod_labels.items()  # it selects the Job's pod ...
    assert "app.kubernetes.io/managed-by" in selected  # ... by MIS's labels, not MIS's own pod's


def test_render_job_with_a_host_path_pins_without_asking_the_cluster(tmp_path: Path) -> None:
    down = KubeDouble()
    down.port = 1
    config = config_file(tmp_path, host_path="/srv/mis/payload")
    [job, _], notes = render_job(config, down.kubeconfig(tmp_path / "kubeconfig"))
    assert pinned_to(job) == [NODE]
    assert "the claim" not in notes
