"""The Helm chart, rendered and linted by a real `helm` binary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import kubernetes_validate
import pytest

from mis_adapters.kubernetes.job import build_job
from mis_app.bootstrap import job_options, sample_job_request
from tests.harness.repo import REPO
from tests.helm.chart import (
    CHART,
    KUBERNETES_VERSIONS,
    find,
    helm,
    mis_settings_from,
    render,
    schema_refusal,
)

CI_VALUES = sorted((CHART / "ci").glob("*.yaml"))


VALUE_SETS = [None, *CI_VALUES]
IDS = ["default", *(p.stem for p in CI_VALUES)]


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_lint_strict_passes(values: Path | None) -> None:
    result = helm("lint", "--strict", str(CHART), *(["-f", str(values)] if values else []))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_rendered_manifests_validate_against_official_schemas(values: Path | None) -> None:
    docs = render(*([values] if values else []))
    assert {d["kind"] for d in docs} >= {
        "Deployment",
        "ConfigMap",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Service",
    }
    assert "ClusterRole" not in {d["kind"] for d in docs}
    for doc in docs:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"map": {"resources": {"gpu": -1}}}, "at '/map/resources/gpu': minimum: got -1, want 0"),
        ({"map": {"resources": {"memory": "8"}}}, "at '/map/resources/memory'"),
        ({"map": {"resources": {"cpu": "two"}}}, "at '/map/resources/cpu'"),
        (
            {"map": {"image": {"repository": ""}}},
            "at '/map/image/repository': minLength: got 0, want 1",
        ),
        ({"map": {"image": {"tag": "", "digest": ""}}}, "at '/map/image': 'anyOf' failed"),
        ({"map": {"timeoutSeconds": 0}}, "at '/map/timeoutSeconds'"),
        ({"service": {"type": "LoadBalancer"}}, "at '/service/type'"),
        (
            {"payload": {"persistentVolumeClaim": {"accessModes": ["ReadWriteSometimes"]}}},
            "at '/payload/persistentVolumeClaim/accessModes/0'",
        ),
    ],
    ids=[
        "negative-gpu",
        "memory-without-unit",
        "bad-cpu",
        "missing-image",
        "no-tag-or-digest",
        "zero-timeout",
        "service-type",
        "access-mode",
    ],
)
def test_bad_values_are_refused_with_a_clear_message(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    assert message in schema_refusal(values, tmp_path)


def test_values_reach_the_job_through_mis_own_settings_loader(tmp_path: Path) -> None:
    docs = render(CHART / "ci" / "single-node-hostpath-values.yaml")
    settings = mis_settings_from(docs, tmp_path)
    options = attrs.evolve(job_options(settings), node_name="gpu-node-1")
    job = build_job(sample_job_request(settings), options)
    container = job["spec"]["template"]["spec"]["containers"][0]

    assert job["metadata"]["namespace"] == "radiology"
    assert container["image"] == (
        "registry.example.org/monai/spleen-seg@sha256:4f53c3a9cfb6b8c05ce7c9dc1f4d4c0b1f8e7d0d6b4b3c2a1f0e9d8c7b6a5f4e"
    )
    assert "command" not in container  # [] keeps the image's entrypoint
    assert container["resources"]["limits"] == {
        "cpu": "4",
        "memory": "16Gi",
        "ephemeral-storage": "4Gi",
        "nvidia.com/gpu": 1,
    }
    assert job["spec"]["activeDeadlineSeconds"] == 120 + 30
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MONAI_TIMEOUT"] == "120"
    assert env["MODEL_VARIANT"] == "fast"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/var/monai/input"]["subPath"] == "sample-request/input"
    assert mounts["/var/monai/input"]["readOnly"] is True
    assert mounts["/var/monai/output"]["subPath"] == "sample-request/output"
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"][0] == {
        "name": "payload",
        "hostPath": {"path": "/srv/mis/payload", "type": "Directory"},
    }
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    # MIS mounts the same volume where its settings say the payload is
    deployment = find(docs, "Deployment")["spec"]["template"]["spec"]
    [payload_mount] = [
        m for m in deployment["containers"][0]["volumeMounts"] if m["name"] == "payload"
    ]
    assert payload_mount["mountPath"] == str(settings.server.payload_dir)
    [payload_volume] = [v for v in deployment["volumes"] if v["name"] == "payload"]
    assert payload_volume["hostPath"]["path"] == "/srv/mis/payload"


def test_claim_values_reach_the_job(tmp_path: Path) -> None:
    docs = render(CHART / "ci" / "multi-node-rwx-values.yaml")
    settings = mis_settings_from(docs, tmp_path)
    job = build_job(sample_job_request(settings), job_options(settings))
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example.org/monai/liver-seg:2.1.0"
    assert container["imagePullPolicy"] == "Always"
    assert container["args"] == ["-i", "/var/monai/input", "-o", "/var/monai/output"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert (
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
        == find(docs, "PersistentVolumeClaim")["metadata"]["name"]
    )
    assert pod["volumes"][1]["name"] == "models"
    assert settings.kubernetes.warm_up is True
    assert int(settings.server.max_upload_bytes) == 8 * 1024**3


def test_default_install_serves_the_example_map(tmp_path: Path) -> None:
    docs = render()
    settings = mis_settings_from(docs, tmp_path)
    deployment = find(docs, "Deployment")
    mis_image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert settings.map.image == mis_image == "monai-inference-service:0.1.0"
    assert settings.map.command[:2] == ["python3", "/app/examples/dicom_stats/app.py"]
    assert (
        REPO / "examples" / "dicom_stats" / "app.py"
    ).exists()  # what the Dockerfile copies to /app


def test_deployment_is_hardened_and_knows_its_node() -> None:
    deployment = find(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    [node] = [e for e in container["env"] if e["name"] == "NODE_NAME"]
    assert node["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert container["resources"]["limits"]["memory"]


def test_a_values_change_rolls_the_pod() -> None:
    before = find(render(), "Deployment")["spec"]["template"]["metadata"]["annotations"][
        "checksum/config"
    ]
    after = find(render(sets=("map.timeoutSeconds=90",)), "Deployment")["spec"]["template"][
        "metadata"
    ]["annotations"]["checksum/config"]
    assert before != after


def test_node_port_ingress_and_network_policy() -> None:
    service = find(render(CHART / "ci" / "single-node-hostpath-values.yaml"), "Service")
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"][0]["nodePort"] == 30080
    docs = render(CHART / "ci" / "multi-node-rwx-values.yaml")
    ingress = find(docs, "Ingress")
    assert ingress["spec"]["tls"] == [
        {"hosts": ["mis.radiology.example.org"], "secretName": "mis-tls"}
    ]
    [policy] = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "mis-monai-inference-service"
    ]  # MIS's own; the MAP Jobs' is in test_chart_security
    assert policy["spec"]["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]
    assert find(docs, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_helm_test_hook_checks_healthz() -> None:
    docs = render()
    [hook] = [d for d in docs if d["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    script = hook["spec"]["containers"][0]["command"][-1]
    assert "/healthz" in script
    assert "mis-monai-inference-service:8000" in script


def test_notes_show_how_to_reach_the_service_with_curl() -> None:
    result = helm("install", "mis", str(CHART), "--dry-run=client", "--namespace", "radiology")
    assert result.returncode == 0, result.stderr
    assert "curl -F file=@input.zip $URL/v1/inference -o output.zip" in result.stdout
    assert (
        "kubectl port-forward -n radiology svc/mis-monai-inference-service 8000:8000"
        in result.stdout
    )
