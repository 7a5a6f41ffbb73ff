"""The NetworkPolicy that keeps MAP Jobs off the network: no ingress, no egress.

A MAP reads its input folder and writes its output folder; it needs no network, and a MAP
that cannot reach anything cannot send patient data anywhere. The chart ships this policy
(its `job.networkPolicy` values open egress for MAPs that must reach a service); without the
chart, `mis kubernetes render-job` prints it for applying once per namespace. It selects the
pods of one MIS installation's Jobs by the labels every Job's pod carries, and nothing else
(MIS's own pod carries other labels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mis_adapters.labels import LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY


def job_pod_selector(instance: str) -> dict[str, dict[str, str]]:
    return {"matchLabels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_INSTANCE: instance}}


def job_network_policy(
    instance: str, namespace: str, egress: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """Deny-all for the Jobs of `instance`, but for the `egress` rules given."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{instance}-map-jobs", "namespace": namespace},
        "spec": {
            "podSelector": job_pod_selector(instance),
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [dict(rule) for rule in egress],
        },
    }
