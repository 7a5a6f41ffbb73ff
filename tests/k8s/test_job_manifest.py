"""The Job manifest: every detail a real cluster checks, validated against official schemas."""

from __future__ import annotations

import uuid
from typing import Any

import attrs
import kubernetes_validate
import pytest

from mis_adapters.kubernetes.job import JobOptions, build_job, job_name
from mis_adapters.kubernetes.ownership import Owner
from mis_app.settings import DEFAULT_SECURITY_CONTEXT
from mis_core.model import JobRequest, MapSpec, Resources, Workspace
from tests.built import job_options

KUBERNETES_VERSIONS = ["1.35.0", "1.36.0", "1.37.0"]  # the three newest the validator knows
PAYLOAD = "/var/lib/mis/payload"

SPEC = MapSpec(
    image="registry.example/spleen-seg:1.2",
    command=("python3", "-m", "app"),
    args=("-i", "{input_path}", "-o", "{output_path}"),
    env={"MODEL": "spleen"},
    resources=Resources(cpu="2", memory="16Gi", gpu=1),
    timeout_seconds=50,
)
JOB_ID = "0123456789abcdef0123456789abcdef"
REQUEST = JobRequest(
    job_id=JOB_ID,
    map=SPEC,
    workspace=Workspace(PAYLOAD, JOB_ID),
    request_id="req-42",
)
DEFAULT = job_options(namespace="mis", claim_name="mis-payload")
NO_CONTEXT = job_options(namespace="mis", security_context={})
FULLY_LOADED = job_options(
    namespace="mis",
    host_path="/srv/mis/payload",
    node_name="gpu-node-1",
    instance="radiology",
    image_pull_policy="Always",
    image_pull_secrets=("regcred",),
    service_account_name="map-runner",
    node_selector={"nvidia.com/gpu.present": "true"},
    tolerations=({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},),
    affinity={
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {"key": "gpu-type", "operator": "In", "values": ["a100", "h100"]}
                        ]
                    }
                ]
            }
        }
    },
    runtime_class_name="nvidia",
    priority_class_name="inference",
    extra_volumes=(
        {"name": "models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}},
    ),
    extra_volume_mounts=({"name": "models", "mountPath": "/opt/models", "readOnly": True},),
    security_context={
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
    },
    pod_security_context={"seccompProfile": {"type": "RuntimeDefault"}, "fsGroup": 1000},
)


def container(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("options", [DEFAULT, FULLY_LOADED], ids=["default", "fully-loaded"])
def test_manifest_validates_against_official_schemas(options: JobOptions, version: str) -> None:
    kubernetes_validate.validate(build_job(REQUEST, options), version, strict=True)
    owned = build_job(REQUEST, options, Owner(pod_name="mis-7d9f-x2", pod_uid=str(uuid.uuid4())))
    kubernetes_validate.validate(owned, version, strict=True)  # with its owner recorded


def test_secret_variables_and_scratch_space() -> None:
    options = attrs.evolve(
        DEFAULT,
        ephemeral_storage="2Gi",
        secret_env={"MODEL": {"name": "map-credentials", "key": "model"}},
    )
    job = build_job(REQUEST, options)
    c = container(job)
    [model] = [e for e in c["env"] if e["name"] == "MODEL"]  # map.env's value gives way
    assert model == {
        "name": "MODEL",
        "valueFrom": {"secretKeyRef": {"name": "map-credentials", "key": "model"}},
    }
    assert c["resources"]["requests"]["ephemeral-storage"] == "2Gi"
    assert c["resources"]["limits"]["ephemeral-storage"] == "2Gi"
    kubernetes_validate.validate(job, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_job_runs_once_with_backstops_and_labels() -> None:
    job = build_job(REQUEST, DEFAULT)
    assert job["metadata"]["name"] == f"mis-{JOB_ID}" == job_name(DEFAULT, JOB_ID)
    assert len(job["metadata"]["name"]) <= 63
    assert job["metadata"]["namespace"] == "mis"
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "monai-inference-service"
    assert labels["mis.monai.io/request-id"] == "req-42"  # the client's
    assert labels["mis.monai.io/job-id"] == JOB_ID  # MIS's own, which finds it
    assert job["metadata"]["annotations"]["mis.monai.io/request-id"] == "req-42"
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 50 + 30
    assert job["spec"]["ttlSecondsAfterFinished"] == 300
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False


@pytest.mark.parametrize("odd", ["-starts-with-dash", "ends-with_", "x" * 64, "has space", "a:b"])
def test_request_ids_that_are_not_label_values_stay_in_the_annotation(odd: str) -> None:
    job = build_job(attrs.evolve(REQUEST, request_id=odd), DEFAULT)
    assert "mis.monai.io/request-id" not in job["metadata"]["labels"]
    assert job["metadata"]["labels"]["mis.monai.io/job-id"] == JOB_ID
    assert job["metadata"]["annotations"]["mis.monai.io/request-id"] == odd
    kubernetes_validate.validate(job, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("fine", ["a", "x" * 63, "Study_0042.b-7"])
def test_request_ids_that_are_label_values_are_labels(fine: str) -> None:
    job = build_job(attrs.evolve(REQUEST, request_id=fine), DEFAULT)
    assert job["metadata"]["labels"]["mis.monai.io/request-id"] == fine
    kubernetes_validate.validate(job, KUBERNETES_VERSIONS[-1], strict=True)


def test_the_container_gets_command_paths_env_and_resources() -> None:
    c = container(build_job(REQUEST, DEFAULT))
    assert c["image"] == "registry.example/spleen-seg:1.2"
    assert c["command"] == ["python3", "-m", "app"]
    assert c["args"] == ["-i", "/var/monai/input", "-o", "/var/monai/output"]
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["MONAI_INPUTPATH"] == env["HOLOSCAN_INPUT_PATH"] == "/var/monai/input"
    assert env["MONAI_OUTPUTPATH"] == env["HOLOSCAN_OUTPUT_PATH"] == "/var/monai/output"
    assert env["MONAI_JOBID"] == JOB_ID
    assert env["MONAI_TIMEOUT"] == "50"
    assert env["MODEL"] == "spleen"
    assert env["OMP_NUM_THREADS"] == "2"
    assert c["resources"] == {  # with the settings' default scratch space
        "requests": {"cpu": "2", "memory": "16Gi", "ephemeral-storage": "4Gi"},
        "limits": {"cpu": "2", "memory": "16Gi", "ephemeral-storage": "4Gi", "nvidia.com/gpu": 1},
    }
    assert c["volumeMounts"][:2] == [
        {
            "name": "payload",
            "mountPath": "/var/monai/input",
            "subPath": f"{JOB_ID}/input",
            "readOnly": True,
        },
        {"name": "payload", "mountPath": "/var/monai/output", "subPath": f"{JOB_ID}/output"},
    ]
    assert c["securityContext"] == DEFAULT_SECURITY_CONTEXT  # the settings' default
    assert "securityContext" not in container(build_job(REQUEST, NO_CONTEXT))  # none configured


def test_no_gpu_means_no_gpu_limit_and_an_image_entrypoint_is_kept() -> None:
    spec = MapSpec(image="app:1", resources=Resources(cpu="500m", memory="1Gi", gpu=0))
    c = container(build_job(JobRequest(JOB_ID, spec, REQUEST.workspace), DEFAULT))
    assert "nvidia.com/gpu" not in c["resources"]["limits"]
    assert "command" not in c
    assert "args" not in c


def test_payload_volume_is_a_claim_or_a_host_path() -> None:
    claim = build_job(REQUEST, DEFAULT)["spec"]["template"]["spec"]["volumes"][0]
    assert claim == {"name": "payload", "persistentVolumeClaim": {"claimName": "mis-payload"}}
    host = build_job(REQUEST, FULLY_LOADED)["spec"]["template"]["spec"]["volumes"]
    assert host[0] == {
        "name": "payload",
        "hostPath": {"path": "/srv/mis/payload", "type": "Directory"},
    }
    assert host[1]["name"] == "models"


def test_pass_through_settings_reach_the_pod() -> None:
    job = build_job(REQUEST, FULLY_LOADED)
    pod = job["spec"]["template"]["spec"]
    assert job["metadata"]["name"].startswith("radiology-")
    assert pod["serviceAccountName"] == "map-runner"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["priorityClassName"] == "inference"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["securityContext"]["fsGroup"] == 1000
    assert container(job)["imagePullPolicy"] == "Always"
    assert container(job)["securityContext"]["runAsNonRoot"] is True
    assert container(job)["volumeMounts"][2]["mountPath"] == "/opt/models"


def test_pinning_to_the_node_is_added_to_every_node_term() -> None:
    affinity = build_job(REQUEST, FULLY_LOADED)["spec"]["template"]["spec"]["affinity"]
    [term] = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"][0]["key"] == "gpu-type"  # the user's rule is kept
    assert term["matchFields"] == [
        {"key": "metadata.name", "operator": "In", "values": ["gpu-node-1"]}
    ]
    assert (
        FULLY_LOADED.affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
            "nodeSelectorTerms"
        ][0].get("matchFields")
        is None
    )  # and the configuration itself is not modified


def test_no_pinning_without_a_node() -> None:
    pod = build_job(REQUEST, DEFAULT)["spec"]["template"]["spec"]
    assert "affinity" not in pod
