"""Where a Job may run: pinned to MIS's node when the payload volume lives on that node.

One pure policy, used by the backend and by `mis kubernetes render-job` alike, so what is
printed is what is submitted. The only fact it needs from the cluster is the payload claim's
access modes, which the caller reads (or cannot, and says so).
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from mis_adapters.kubernetes.job import JobOptions

SHARED_MODES = frozenset({"ReadWriteMany", "ReadOnlyMany"})  # mountable on several nodes


def claim_modes_needed(node_local: bool | None, host_path: str) -> bool:
    """Whether the policy needs the claim's access modes (no override, no hostPath)."""
    return node_local is None and not host_path


def payload_is_node_local(
    node_local: bool | None, host_path: str, claim_modes: Collection[str] | None
) -> bool:
    """The configured answer, else yes for a hostPath, else what the claim's access modes say.

    `claim_modes` None (the claim could not be read) counts as ReadWriteOnce: pinning a Job
    that could run anywhere only narrows where it runs, while not pinning a Job whose volume
    cannot follow it leaves it unschedulable, or reading an empty folder on another node.
    """
    if node_local is not None:
        return node_local
    if host_path:
        return True
    return claim_modes is None or not set(claim_modes) & SHARED_MODES


def pinned_affinity(affinity: Mapping[str, Any], node_name: str) -> dict[str, Any]:
    """`affinity`, with every required node term also requiring `node_name` when it is set."""
    result = copy.deepcopy(dict(affinity))
    if not node_name:
        return result
    pin = {"key": "metadata.name", "operator": "In", "values": [node_name]}
    required = result.setdefault("nodeAffinity", {}).setdefault(
        "requiredDuringSchedulingIgnoredDuringExecution", {}
    )
    terms = required.setdefault("nodeSelectorTerms", [])
    if not terms:
        terms.append({})
    for term in terms:
        term.setdefault("matchFields", []).append(pin)
    return result


def place(
    options: JobOptions, namespace: str, claim_modes: Collection[str] | None
) -> tuple[JobOptions, str]:
    """The options as a Job is submitted with them: in `namespace`, pinned to MIS's node or
    not; and a warning when the payload is node-local but that node is unknown."""
    local = payload_is_node_local(options.node_local, options.host_path, claim_modes)
    warning = ""
    if local and not options.node_name:
        warning = (
            "the payload volume is node-local but MIS does not know its node; set the "
            "NODE_NAME environment variable (downward API) or kubernetes.node_name"
        )
    node = options.node_name if local else ""
    return attrs.evolve(options, namespace=namespace, node_name=node), warning
