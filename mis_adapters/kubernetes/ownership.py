"""Which MIS a Job belongs to, and whether what a MIS finds at start-up is its to sweep.

Several MIS can share a namespace and an instance name: replicas, the old and the new pod
of a rolling update, a restart beside an old process still running. Each Job records its
owner: the MIS process (a token made at start, as a label) and, inside a cluster, the MIS
pod (an owner reference, from the downward API's POD_NAME and POD_UID). The reference also
lets Kubernetes' garbage collector delete the Jobs of a MIS pod that is gone, whenever that
happens. At start-up a MIS deletes only Jobs whose owner is known to be dead:

- no owner recorded (made by an older MIS);
- past its own deadline (the cluster has stopped it; nobody can still be using it);
- owned by this very pod (a pod runs one MIS, so that was an earlier process here);
- owned by a pod that no longer exists, or that has finished.

A Job made outside a cluster by another process is left alone until its deadline: whether
that process lives cannot be told from here.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from mis_adapters.kubernetes.status import pod_has_stopped
from mis_adapters.labels import LABEL_JOB_ID

LABEL_OWNER = "mis.monai.io/owner"  # the owning MIS process's token
IDENTITY_LABELS = (LABEL_JOB_ID, LABEL_OWNER)  # a Job with these values is this request's
POD_NAME_VARIABLE = "POD_NAME"
POD_UID_VARIABLE = "POD_UID"


@attrs.frozen
class Owner:
    """This MIS process: a token of its own, and its pod when it runs in one."""

    token: str = attrs.field(factory=lambda: secrets.token_hex(8))
    pod_name: str = ""
    pod_uid: str = ""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Owner:
        return cls(
            pod_name=environ.get(POD_NAME_VARIABLE, ""), pod_uid=environ.get(POD_UID_VARIABLE, "")
        )

    def labels(self) -> dict[str, str]:
        return {LABEL_OWNER: self.token}

    def references(self) -> list[dict[str, Any]]:
        """The owner reference to MIS's pod; none outside a cluster."""
        if not (self.pod_name and self.pod_uid):
            return []
        return [{"apiVersion": "v1", "kind": "Pod", "name": self.pod_name, "uid": self.pod_uid}]


def same_identity(existing: Mapping[str, Any], manifest: Mapping[str, Any]) -> bool:
    """Whether `existing` is the Job `manifest` describes: the same job id and owner labels."""
    ours = manifest["metadata"].get("labels") or {}
    theirs = (existing.get("metadata") or {}).get("labels") or {}
    return all(theirs.get(key) == ours.get(key) for key in IDENTITY_LABELS if key in ours)


def owner_pod_name(job: Mapping[str, Any]) -> str:
    """The name of the MIS pod that owns `job`, or "" when it records none."""
    return str(_pod_reference(job).get("name", ""))


def why_leftover(
    job: Mapping[str, Any], me: Owner, owner_pod: Mapping[str, Any] | None, now: datetime
) -> str:
    """Why `job` is a leftover to delete, or "" while its owner may still be using it.

    `owner_pod`: the pod `owner_pod_name(job)` names, as the API has it now (None: gone).
    """
    metadata = job["metadata"]
    token = (metadata.get("labels") or {}).get(LABEL_OWNER)
    if not token:
        return "it records no owner (an earlier version of MIS made it)"
    if token == me.token:
        return ""
    if _past_deadline(job, now):
        return "it is past its deadline"
    reference = _pod_reference(job)
    if not reference:
        return ""
    if reference.get("uid") == me.pod_uid:
        return "an earlier MIS process in this pod made it"
    if owner_pod is None or owner_pod["metadata"].get("uid") != reference.get("uid"):
        return f"its owner, pod {reference.get('name')}, is gone"
    if pod_has_stopped(dict(owner_pod)):
        return f"its owner, pod {reference.get('name')}, has stopped"
    return ""


def _pod_reference(job: Mapping[str, Any]) -> Mapping[str, Any]:
    for reference in job["metadata"].get("ownerReferences") or []:
        if reference.get("kind") == "Pod":
            return dict(reference)
    return {}


def _past_deadline(job: Mapping[str, Any], now: datetime) -> bool:
    created = job["metadata"].get("creationTimestamp")
    deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
    if not created or deadline is None:
        return False
    started = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
    return (now - started).total_seconds() > float(deadline)
