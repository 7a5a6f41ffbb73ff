"""The `kubernetes` section: how each request's Job is made."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from mis_app.settings.section import Section
from mis_core.quantity import MemoryQuantity

_ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"  # what Kubernetes accepts as a variable name


class PayloadVolumeSettings(Section):
    """The volume that holds server.payload_dir, as a Job must mount it."""

    claim_name: str = ""
    host_path: str = ""
    # Pin Jobs to MIS's node? None: yes for a hostPath, and for a claim that is ReadWriteOnce.
    node_local: bool | None = None


DEFAULT_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
# With these two, a Job's pod passes the `restricted` Pod Security Standard (given a claim:
# a hostPath payload volume passes only `privileged`).
DEFAULT_POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}


class SecretKeyRef(Section):
    """One key of a Secret in MIS's namespace; the kubelet reads it, MIS never does."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]{1,253}$")


class KubernetesSettings(Section):
    namespace: str = ""  # default: the namespace MIS runs in, else the kubeconfig's
    instance: str = Field("mis", pattern=r"^[a-z0-9]([-a-z0-9]{0,24}[a-z0-9])?$")
    node_name: str = ""  # default: the NODE_NAME environment variable (downward API)
    payload_volume: PayloadVolumeSettings = PayloadVolumeSettings()
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: list[str] = []
    service_account_name: str = ""
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    affinity: dict[str, Any] = {}
    runtime_class_name: str = ""
    priority_class_name: str = ""
    extra_volumes: list[dict[str, Any]] = []
    extra_volume_mounts: list[dict[str, Any]] = []
    security_context: dict[str, Any] = DEFAULT_SECURITY_CONTEXT
    pod_security_context: dict[str, Any] = DEFAULT_POD_SECURITY_CONTEXT
    # The container's scratch space (its writable layer, logs), requested and limited.
    ephemeral_storage: str = "4Gi"
    # MAP environment variables taken from Secrets: {VARIABLE: {name: SECRET, key: KEY}}.
    secret_env: dict[Annotated[str, StringConstraints(pattern=_ENV_NAME)], SecretKeyRef] = {}
    deadline_margin_seconds: int = Field(30, ge=0)
    ttl_seconds_after_finished: int = Field(300, ge=0)
    delete_wait_seconds: float = Field(30, ge=0)
    # A watch silent this long is given up and opened again from the last version it saw (the
    # second time in a row, the objects are listed again): the most a watch a load balancer or
    # a partition silenced can delay a request's answer.
    resync_seconds: float = Field(5, gt=0, le=300)
    # How long an API call is retried outside a request (start-up, clean-up); inside one, its
    # timeout bounds the retries.
    api_retry_max_seconds: float = Field(10, ge=0)
    warm_up: bool = False  # pre-pull the MAP image at start-up; readiness waits for it
    warm_up_timeout_seconds: float = Field(900, gt=0)  # then ready anyway, with a warning

    @field_validator("ephemeral_storage")
    @classmethod
    def _ephemeral_storage(cls, value: str) -> str:
        return str(MemoryQuantity.parse(value))
