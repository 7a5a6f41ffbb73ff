"""The followers of a Job: its outcome (with the MAP's log), its pods going, its image pull.

Each reads the list-then-watch streams of `watch.py` and leaves every judgement on what it
sees to `status.py`. A listing (the first, or one after a watch expired: 410 Gone) that no
longer holds the Job, or the pod MIS saw, says it was deleted: the watch missed the event.
"""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
from anyio.abc import TaskGroup
from loguru import logger

from mis_adapters.kubernetes.api import LogLimits
from mis_adapters.kubernetes.errors import KubeApiError
from mis_adapters.kubernetes.job import CONTAINER
from mis_adapters.kubernetes.status import (
    JOB_DELETED,
    POD_DELETED,
    Verdict,
    container_started,
    judge_deleted_pod,
    judge_job,
    judge_pod,
    judge_present_pod,
    pull_state,
    waiting_reason,
)
from mis_adapters.kubernetes.watch import Change, Event, Listed, Watch, Watcher, watching
from mis_adapters.map_follow import MapLog
from mis_core.errors import BackendUnavailable
from mis_core.model import JobProgress

# A log read at once (the MAP finished before its log could be followed) is bounded.
LOG_READ_LIMITS = LogLimits(lines=10_000, size=16 << 20)
LOG_READ_SECONDS = 10  # a log read after the fact, or a pod looked up, gives up after this
# A refused log read is retried this long: neither the answer nor the API waits on a log.
LOG_RETRY_SECONDS = 1.0
# The log stream ends with the container; this bounds the wait for its last lines (it only
# matters when the stream hangs on after the container has gone).
LOG_END_SECONDS = 5
API_FAILURES = (KubeApiError, BackendUnavailable, TimeoutError)


class JobFollower:
    """Watches one Job and its pod until an outcome is known, streaming the MAP's log."""

    def __init__(
        self,
        watcher: Watcher,
        name: str,
        selector: str,
        progress: JobProgress,
        log_bytes: int,
    ) -> None:
        self.watcher = watcher
        self.api = watcher.api
        self.name = name
        self.selector = selector
        self.progress = progress
        self.map_log = MapLog(max_bytes=log_bytes)
        self.pod_name = ""
        self.last_pod: dict[str, Any] | None = None  # as the latest event showed it
        self.log_problem = ""  # why the MAP's log could not be read, when it could not
        self._log_done = anyio.Event()
        self._log_started = False

    async def follow(self) -> Verdict:
        job = Watch("jobs", {"field_selector": f"metadata.name={self.name}"})
        pods = Watch("pods", {"label_selector": self.selector})
        verdict: Verdict | None = None
        async with watching(self.watcher, job, pods) as events, anyio.create_task_group() as logs:
            async for event in events:
                verdict = self._judge(event, logs)
                if verdict is not None:
                    verdict = await self._settle(verdict, judged_by_job=event.kind == "jobs")
                    break
            logs.cancel_scope.cancel()
        assert verdict is not None  # the events end early only on a failure, raised above
        return verdict

    def _judge(self, event: Event, logs: TaskGroup) -> Verdict | None:
        if isinstance(event, Listed):
            return self._judge_listing(event)
        if event.kind == "jobs":
            return JOB_DELETED if event.type == "DELETED" else judge_job(event.obj)
        self.pod_name = event.name
        self.last_pod = event.obj
        if event.type == "DELETED":
            return judge_deleted_pod(event.obj)
        if not self._log_started and container_started(event.obj):
            self._log_started = True
            logs.start_soon(self._stream_log)
        self.progress.waiting_reason = waiting_reason(event.obj)
        return judge_present_pod(event.obj)

    def _judge_listing(self, listed: Listed) -> Verdict | None:
        if listed.kind == "jobs" and self.name not in listed.names:
            return JOB_DELETED
        if listed.kind == "pods" and self.last_pod and self.pod_name not in listed.names:
            return judge_deleted_pod(self.last_pod)
        return None

    async def _settle(self, verdict: Verdict, judged_by_job: bool) -> Verdict:
        """Finish reading what the job left: the pod's own verdict, and its whole log."""
        with contextlib.suppress(*API_FAILURES), anyio.fail_after(LOG_READ_SECONDS):
            verdict = await self._second_look(verdict, judged_by_job)
        if self._log_started:
            with anyio.move_on_after(LOG_END_SECONDS) as waited:  # read the log to its end
                await self._log_done.wait()
            if waited.cancelled_caught and not self.log_problem:
                self._log_unavailable(TimeoutError(f"it had not ended {LOG_END_SECONDS:g}s later"))
        elif self.pod_name:
            await self._read_log()  # it finished before MIS saw it run
        return verdict

    async def _second_look(self, verdict: Verdict, judged_by_job: bool) -> Verdict:
        """What another object says more precisely than the event that decided."""
        if judged_by_job and verdict != JOB_DELETED and not (verdict.succeeded and self.pod_name):
            # the Job's event may come before the pod's on the other stream: ask the pod,
            # whose verdict says more (an exit code, OOMKilled, an eviction) than the Job's
            # conditions, and whose log is still to be read when its watch missed it
            found = await self._pod_verdict()
            return verdict if verdict.succeeded else found or verdict
        if verdict.reason == POD_DELETED:  # it may have gone with its Job, which says more
            return await self._job_deleted() or verdict
        return verdict

    async def _pod_verdict(self) -> Verdict | None:
        listing = await self.api.list_objects("pods", label_selector=self.selector)
        for pod in listing.get("items") or []:
            self.pod_name = pod["metadata"]["name"]
            verdict = judge_pod(pod)
            if verdict is not None:
                return verdict
        return judge_pod(self.last_pod) if self.last_pod else None

    async def _job_deleted(self) -> Verdict | None:
        listing = await self.api.list_objects("jobs", field_selector=f"metadata.name={self.name}")
        jobs = listing.get("items") or []
        return JOB_DELETED if not jobs or judge_job(jobs[0]) == JOB_DELETED else None

    async def _read_log(self) -> None:
        try:
            with anyio.fail_after(LOG_READ_SECONDS):
                await self.map_log.pump(
                    self.api.read_log(
                        self.pod_name, CONTAINER, limits=LOG_READ_LIMITS, budget=LOG_RETRY_SECONDS
                    )
                )
        except API_FAILURES as exc:
            self._log_unavailable(exc)

    async def _stream_log(self) -> None:
        try:
            log = self.api.read_log(self.pod_name, CONTAINER, follow=True, budget=LOG_RETRY_SECONDS)
            await self.map_log.pump(log)
        except API_FAILURES as exc:
            self._log_unavailable(exc)
        finally:
            self._log_done.set()

    def _log_unavailable(self, exc: Exception) -> None:
        self.log_problem = str(exc) or "no answer in time"
        logger.warning(
            "the MAP's log could not be read ({}): its lines from here on are unavailable in "
            "this log; the request's result does not depend on them",
            self.log_problem,
        )


async def pods_gone(watcher: Watcher, selector: str) -> None:
    """Return once no pod matches `selector`, as the watch's own listings and events tell."""
    present: set[str] | None = None  # unknown until the first listing
    async with watching(watcher, Watch("pods", {"label_selector": selector})) as events:
        async for event in events:
            if isinstance(event, Listed):
                present = set(event.names)
            elif present is not None and event.type == "DELETED":
                present.discard(event.name)
            elif present is not None:
                present.add(event.name)
            if present == set():
                return


async def job_appears(watcher: Watcher, name: str) -> None:
    """Return once the Job `name` exists (one whose create was cut short may come late)."""
    job = Watch("jobs", {"field_selector": f"metadata.name={name}"})
    async with watching(watcher, job) as events:
        async for event in events:
            if isinstance(event, Change) and event.type != "DELETED":
                return


async def image_pulled(watcher: Watcher, selector: str, progress: JobProgress) -> str:
    """ "done" once the warm-up pod's image is on its node, else why it cannot get there.

    What the pod waits for meanwhile is kept in `progress`, for a warm-up that runs out of time.
    """
    async with watching(watcher, Watch("pods", {"label_selector": selector})) as events:
        async for event in events:
            if isinstance(event, Change):
                progress.waiting_reason = waiting_reason(event.obj)
                if state := pull_state(event.obj):
                    return state
    return "the warm-up pod's watch ended"  # only reached when a failure is raised instead
