"""`mis kubernetes render-job`: what MIS would submit for a request, decided as MIS decides it.

The backend's own placement runs, reading the payload claim from the cluster when it can be
reached; when it cannot, the notes say so and what was assumed (the same as MIS assumes when
it cannot read the claim). The NetworkPolicy for the Jobs' pods comes with it.
"""

from __future__ import annotations

from typing import Any

from mis_adapters.kubernetes.backend import KubernetesJobBackend
from mis_adapters.kubernetes.job import build_job
from mis_adapters.kubernetes.network import job_network_policy
from mis_adapters.kubernetes.placement import claim_modes_needed, place
from mis_core.errors import BackendUnavailable
from mis_core.model import JobRequest


async def render_job(
    backend: KubernetesJobBackend, request: JobRequest
) -> tuple[list[dict[str, Any]], list[str]]:
    """The Job and the NetworkPolicy `backend` would submit, and notes on what was read or
    assumed. Give it a backend that does not retry (api_retry_max_seconds 0): it asks once."""
    options = backend.job
    notes: list[str] = []
    claim_read = claim_modes_needed(options.node_local, options.host_path)
    try:
        resolved = await backend.job_options()
        if backend.claim_problem:
            notes.append(f"{backend.claim_problem}: pinned to MIS's node, as MIS does then")
        elif claim_read:
            notes.append(
                f"the access modes of the claim {options.claim_name} read from the cluster"
            )
        warning = backend.placement_warning
    except BackendUnavailable as exc:
        namespace = options.namespace or "default"
        resolved, warning = place(options, namespace, None)
        notes.append(f"not read from the cluster: {exc.message}")
        notes.append(f"namespace {namespace}, as configured (else default)")
        if claim_read:
            notes.append(
                f"the claim {options.claim_name} was taken as ReadWriteOnce (pinned to MIS's "
                "node), as MIS does when it cannot read the claim"
            )
    finally:
        await backend.close()
    if warning:
        notes.append(warning)
    job = build_job(request, resolved, backend.owner)
    return [job, job_network_policy(resolved.instance, resolved.namespace)], notes
