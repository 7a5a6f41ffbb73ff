"""The batch/v1 Job that runs the MAP once, as a plain dict in the API's wire format.

Pure: no API calls, so `mis kubernetes render-job` prints exactly what MIS would submit and
tests can validate it against the official schemas.

The pod passes the `restricted` Pod Security Standard with MIS's default security contexts
and a claim for the payload volume (a hostPath payload volume passes only `privileged`).
Values from Secrets (`secret_env`) reach the MAP as secretKeyRef references: the credential
itself is never in MIS's configuration or in the Job.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from mis_adapters.kubernetes.ownership import Owner
from mis_adapters.kubernetes.placement import pinned_affinity
from mis_adapters.labels import (
    LABEL_INSTANCE,
    LABEL_JOB_ID,
    LABEL_MANAGED_BY,
    LABEL_REQUEST_ID,
    MANAGED_BY,
)
from mis_core.model import JobRequest, Workspace

ANNOTATION_REQUEST_ID = "mis.monai.io/request-id"
CONTAINER = "map"
PAYLOAD_VOLUME = "payload"
GPU_RESOURCE = "nvidia.com/gpu"
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


@attrs.frozen
class JobOptions:
    """Cluster-side settings of every Job, from the `kubernetes` section of the configuration
    (the settings of the same names state the defaults; the bootstrap builds this)."""

    namespace: str
    claim_name: str
    host_path: str
    node_name: str  # MIS's node: Jobs are pinned to it when the payload is node-local
    node_local: bool | None  # None: as placement.payload_is_node_local decides
    instance: str
    image_pull_policy: str
    image_pull_secrets: Sequence[str]
    service_account_name: str
    node_selector: Mapping[str, str]
    tolerations: Sequence[Mapping[str, Any]]
    affinity: Mapping[str, Any]
    runtime_class_name: str
    priority_class_name: str
    extra_volumes: Sequence[Mapping[str, Any]]
    extra_volume_mounts: Sequence[Mapping[str, Any]]
    security_context: Mapping[str, Any]
    pod_security_context: Mapping[str, Any]
    ephemeral_storage: str  # the container's scratch space, requested and limited
    secret_env: Mapping[str, Mapping[str, str]]  # {VAR: {name, key}}
    deadline_margin_seconds: int
    ttl_seconds_after_finished: int


def job_name(options: JobOptions, job_id: str) -> str:
    return f"{options.instance}-{job_id}"


def instance_selector(options: JobOptions) -> str:
    """Selects every object this MIS installation created, and nothing of another one."""
    return f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_INSTANCE}={options.instance}"


def job_selector(options: JobOptions, job_id: str) -> str:
    """Selects the Job (and its pods) of one request: by MIS's own id, never the client's."""
    return f"{instance_selector(options)},{LABEL_JOB_ID}={job_id}"


def build_job(
    request: JobRequest, options: JobOptions, owner: Owner | None = None
) -> dict[str, Any]:
    """The Job for `request`; `options.node_name` pins it (placement decides whether to)."""
    labels = {**_labels(options, request), **(owner.labels() if owner else {})}
    metadata: dict[str, Any] = {
        "name": job_name(options, request.job_id),
        "namespace": options.namespace,
        "labels": labels,
        "annotations": {ANNOTATION_REQUEST_ID: request.request_id},
    }
    if owner and owner.references():
        metadata["ownerReferences"] = owner.references()
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": _deadline(request.map.timeout_seconds, options),
            "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
            "template": {"metadata": {"labels": labels}, "spec": _pod(request, options)},
        },
    }


def _pod(request: JobRequest, options: JobOptions) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [_container(request, options)],
        "volumes": [_payload_volume(options), *(dict(v) for v in options.extra_volumes)],
    }
    optional = {
        "serviceAccountName": options.service_account_name,
        "nodeSelector": dict(options.node_selector),
        "tolerations": [dict(t) for t in options.tolerations],
        "affinity": pinned_affinity(options.affinity, options.node_name),
        "runtimeClassName": options.runtime_class_name,
        "priorityClassName": options.priority_class_name,
        "imagePullSecrets": [{"name": name} for name in options.image_pull_secrets],
        "securityContext": copy.deepcopy(dict(options.pod_security_context)),
    }
    pod.update({key: value for key, value in optional.items() if value})
    return pod


def _container(request: JobRequest, options: JobOptions) -> dict[str, Any]:
    spec = request.map
    folders = request.container_folders
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "imagePullPolicy": options.image_pull_policy,
        "env": _environment(request, options),
        "resources": _resources(request, options),
        "volumeMounts": [
            {
                "name": PAYLOAD_VOLUME,
                "mountPath": spec.input_path,
                "subPath": request.workspace.sub_path(Workspace.INPUT),
                "readOnly": True,
            },
            {
                "name": PAYLOAD_VOLUME,
                "mountPath": spec.output_path,
                "subPath": request.workspace.sub_path(Workspace.OUTPUT),
            },
            *(dict(m) for m in options.extra_volume_mounts),
        ],
    }
    if spec.command:
        container["command"] = folders.substitute(spec.command)
    if spec.args:
        container["args"] = folders.substitute(spec.args)
    if options.security_context:
        container["securityContext"] = copy.deepcopy(dict(options.security_context))
    return container


def _deadline(timeout_seconds: float, options: JobOptions) -> int:
    """The server-side backstop: MIS stops the Job at its timeout, the cluster a margin later."""
    return math.ceil(timeout_seconds) + options.deadline_margin_seconds


def _labels(options: JobOptions, request: JobRequest) -> dict[str, str]:
    """The job id finds the Job; the client's request id is a label too when it can be one
    (the annotation always has it)."""
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_INSTANCE: options.instance,
        LABEL_JOB_ID: request.job_id,
    }
    if _LABEL_VALUE.fullmatch(request.request_id):
        labels[LABEL_REQUEST_ID] = request.request_id
    return labels


def _environment(request: JobRequest, options: JobOptions) -> list[dict[str, Any]]:
    """The MAP's environment; a variable in `secret_env` comes from its Secret, not map.env."""
    env = request.environment(request.container_folders)
    plain = [{"name": k, "value": v} for k, v in env.items() if k not in options.secret_env]
    from_secrets = [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": ref["name"], "key": ref["key"]}}}
        for k, ref in options.secret_env.items()
    ]
    return plain + from_secrets


def _resources(request: JobRequest, options: JobOptions) -> dict[str, dict[str, Any]]:
    """Every quantity of the Job, in the one place that handles them: requests are limits."""
    wanted = request.map.resources
    requests: dict[str, Any] = {"cpu": str(wanted.cpu), "memory": str(wanted.memory)}
    if options.ephemeral_storage:
        requests["ephemeral-storage"] = options.ephemeral_storage
    limits: dict[str, Any] = dict(requests)
    if wanted.gpu > 0:
        limits[GPU_RESOURCE] = wanted.gpu
    return {"requests": requests, "limits": limits}


def _payload_volume(options: JobOptions) -> dict[str, Any]:
    if options.claim_name:
        return {"name": PAYLOAD_VOLUME, "persistentVolumeClaim": {"claimName": options.claim_name}}
    return {"name": PAYLOAD_VOLUME, "hostPath": {"path": options.host_path, "type": "Directory"}}
