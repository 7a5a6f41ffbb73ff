"""The start-up sweep: delete the Jobs of this installation that a dead MIS left behind.

Whose Job is whose, and when an owner counts as dead, is `ownership.py`'s to say; this module
makes the API calls.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from loguru import logger

from mis_adapters.kubernetes.api import KubeApi
from mis_adapters.kubernetes.errors import KubeApiError
from mis_adapters.kubernetes.ownership import Owner, owner_pod_name, why_leftover
from mis_core.errors import BackendUnavailable


async def sweep_leftovers(api: KubeApi, selector: str, owner: Owner, propagation: str) -> int:
    """Delete the Jobs `selector` names whose owner is dead; keep the rest. The number deleted."""
    now = datetime.now(UTC)
    swept = kept = 0
    try:
        for job in (await api.list_objects("jobs", label_selector=selector)).get("items") or []:
            why = why_leftover(job, owner, await _owner_pod(api, job, owner), now)
            if not why:
                kept += 1
                continue
            logger.info("deleting the leftover Job {}: {}", job["metadata"]["name"], why)
            await api.delete_job(job["metadata"]["name"], propagation)
            swept += 1
    except KubeApiError as exc:
        raise BackendUnavailable(f"Sweeping leftover Jobs failed: {exc}") from exc
    if kept:
        logger.info("left {} Job(s) of another running MIS alone", kept)
    return swept


async def _owner_pod(api: KubeApi, job: dict[str, Any], owner: Owner) -> dict[str, Any] | None:
    name = owner_pod_name(job)
    if not name or name == owner.pod_name:
        return None
    listing = await api.list_objects("pods", field_selector=f"metadata.name={name}")
    return next(iter(listing.get("items") or []), None)
