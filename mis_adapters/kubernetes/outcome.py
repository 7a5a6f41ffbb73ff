"""A Kubernetes Job's outcome as MIS answers it: the watches' verdict and the MAP's last
log lines.

Apart from the backend because it needs none of its state: only the API, the verdict and
what the follower streamed.
"""

from __future__ import annotations

import anyio
from loguru import logger

from mis_adapters.kubernetes.api import KubeApi, LogLimits
from mis_adapters.kubernetes.follower import (
    API_FAILURES,
    LOG_READ_SECONDS,
    LOG_RETRY_SECONDS,
    JobFollower,
)
from mis_adapters.kubernetes.job import CONTAINER
from mis_adapters.kubernetes.status import Verdict, ran_image
from mis_adapters.map_follow import LOG_TAIL_LINES, last_lines
from mis_core.model import JobOutcome

TAIL_READ_BYTES = 1 << 20  # the failure message's last lines, read again from the pod's log


async def job_outcome(api: KubeApi, verdict: Verdict, follower: JobFollower) -> JobOutcome:
    """The outcome of a Job that was followed to its verdict, with the MAP's last log lines:
    for a failure, read again from the API (the stream may have been cut before the end)."""
    tail = tuple(follower.map_log.tail)
    if not verdict.succeeded and follower.pod_name:
        # the stream may have been cut before the end: the API's own tail is whole
        try:
            limits = LogLimits(lines=LOG_TAIL_LINES, size=TAIL_READ_BYTES)
            logged = api.read_log(
                follower.pod_name, CONTAINER, limits=limits, budget=LOG_RETRY_SECONDS
            )
            with anyio.fail_after(LOG_READ_SECONDS):
                tail = await last_lines(logged) or tail
            follower.log_problem = ""
        except API_FAILURES as exc:
            # without a log (the container never started), keep what was streamed
            logger.debug("the MAP's log tail could not be read again: {}", exc)
    if follower.log_problem:
        tail = (*tail, f"[the rest of its log is unavailable: {follower.log_problem}]")
    image = ran_image(follower.last_pod)
    return JobOutcome(verdict.succeeded, verdict.reason, verdict.exit_code, tail, image)
