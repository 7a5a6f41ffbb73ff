"""The followers of a Job: its outcome (with the MAP's log), its pods going, its image pull.

Each reads the list-then-watch streams of `watch.py` and leaves every judgement on what it
sees to `status.py`.
"""

from __future__ import annotations

import contextlib

import anyio
from anyio.abc import TaskGroup
from loguru import logger

from mis_adapters.kubernetes.api import KubeApi, LogLimits
from mis_adapters.kubernetes.errors import KubeApiError
from mis_adapters.kubernetes.job import CONTAINER
from mis_adapters.kubernetes.status import (
    JOB_DELETED,
    Verdict,
    container_started,
    judge_deleted_pod,
    judge_job,
    judge_pod,
    pull_state,
    waiting_reason,
)
from mis_adapters.kubernetes.watch import Change, Listed, Watch, watching
from mis_adapters.map_follow import MAX_LOGGED_BYTES, MapLog
from mis_core.errors import BackendUnavailable
from mis_core.model import JobProgress

# A log read at once (the MAP finished before its log could be followed) is bounded.
LOG_READ_LIMITS = LogLimits(lines=10_000, size=16 << 20)
# The log stream ends with the container; this bounds the wait for its last lines (it only
# matters when the stream hangs on after the container has gone).
LOG_END_SECONDS = 5
API_FAILURES = (KubeApiError, BackendUnavailable)


class JobFollower:
    """Watches one Job and its pod until an outcome is known, streaming the MAP's log."""

    def __init__(
        self,
        api: KubeApi,
        name: str,
        selector: str,
        progress: JobProgress,
        tail_lines: int,
        log_bytes: int = MAX_LOGGED_BYTES,
    ) -> None:
        self.api = api
        self.name = name
        self.selector = selector
        self.progress = progress
        self.map_log = MapLog(tail_lines, max_bytes=log_bytes)
        self.pod_name = ""
        self._log_done = anyio.Event()
        self._log_started = False

    async def follow(self) -> Verdict:
        job = Watch("jobs", {"field_selector": f"metadata.name={self.name}"})
        pods = Watch("pods", {"label_selector": self.selector})
        verdict: Verdict | None = None
        async with watching(self.api, job, pods) as events, anyio.create_task_group() as logs:
            async for event in events:
                if isinstance(event, Listed):
                    continue
                verdict = self._judge(event, logs)
                if verdict is not None:
                    verdict = await self._settle(verdict, judged_by_job=event.kind == "jobs")
                    break
            logs.cancel_scope.cancel()
        assert verdict is not None  # the events end early only on a failure, raised above
        return verdict

    def _judge(self, change: Change, logs: TaskGroup) -> Verdict | None:
        if change.kind == "jobs":
            return JOB_DELETED if change.type == "DELETED" else judge_job(change.obj)
        self.pod_name = change.name
        if change.type == "DELETED":
            return judge_deleted_pod(change.obj)
        if not self._log_started and container_started(change.obj):
            self._log_started = True
            logs.start_soon(self._stream_log)
        self.progress.waiting_reason = waiting_reason(change.obj)
        return judge_pod(change.obj)

    async def _settle(self, verdict: Verdict, judged_by_job: bool) -> Verdict:
        """Finish reading what the job left: the pod's own verdict, and its whole log."""
        if judged_by_job and not verdict.succeeded:
            # the Job's event may come before the pod's on the other stream: ask the pod,
            # whose verdict says more (an exit code, OOMKilled) than the Job's conditions
            with contextlib.suppress(*API_FAILURES):
                verdict = await self._pod_verdict() or verdict
        if self._log_started:
            with anyio.move_on_after(LOG_END_SECONDS):  # read the log to its end
                await self._log_done.wait()
        elif self.pod_name:
            await self._read_log()  # it finished before MIS saw it run
        return verdict

    async def _pod_verdict(self) -> Verdict | None:
        listing = await self.api.list_objects("pods", label_selector=self.selector)
        for pod in listing.get("items") or []:
            self.pod_name = pod["metadata"]["name"]
            verdict = judge_pod(pod)
            if verdict is not None:
                return verdict
        return None

    async def _read_log(self) -> None:
        with contextlib.suppress(*API_FAILURES):
            await self.map_log.pump(
                self.api.read_log(self.pod_name, CONTAINER, limits=LOG_READ_LIMITS)
            )

    async def _stream_log(self) -> None:
        try:
            await self.map_log.pump(self.api.read_log(self.pod_name, CONTAINER, follow=True))
        except API_FAILURES as exc:
            logger.warning("could not stream the MAP's log: {}", exc)
        finally:
            self._log_done.set()


async def pods_gone(api: KubeApi, selector: str) -> None:
    """Return once no pod matches `selector`, as the watch's own listings and events tell."""
    present: set[str] | None = None  # unknown until the first listing
    async with watching(api, Watch("pods", {"label_selector": selector})) as events:
        async for event in events:
            if isinstance(event, Listed):
                present = set(event.names)
            elif present is not None and event.type == "DELETED":
                present.discard(event.name)
            elif present is not None:
                present.add(event.name)
            if present == set():
                return


async def image_pulled(api: KubeApi, selector: str) -> str:
    """ "done" once the warm-up pod's image is on its node, else why it cannot get there."""
    async with watching(api, Watch("pods", {"label_selector": selector})) as events:
        async for event in events:
            if isinstance(event, Change) and (state := pull_state(event.obj)):
                return state
    return "the warm-up pod's watch ended"  # only reached when a failure is raised instead
