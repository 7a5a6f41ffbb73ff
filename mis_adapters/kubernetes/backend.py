"""The Kubernetes backend: one batch/v1 Job per request, followed by watching, not polling.

The Job and its Pod are watched (list, then watch from the list's resourceVersion; resumed
after a dropped stream, re-listed after 410 Gone). The first of these decides the outcome:
the container finishing (exit code, OOMKilled), an image or container error the pod cannot get
past (it fails at once, not at the timeout), or the Job's own conditions. While the pod cannot
be scheduled, the scheduler's reason is kept for the timeout message. The MAP's log is
streamed into MIS's log. Whatever happens, the Job is deleted with its pods; when the job is
stopped early, MIS waits (within a bound) for the pod to be gone before the workspace goes.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectSendStream
from loguru import logger

from mis_adapters.kubernetes.api import KubeApi, KubeApiError, connect
from mis_adapters.kubernetes.job import (
    CONTAINER,
    JobOptions,
    build_job,
    instance_selector,
    job_name,
    job_selector,
)
from mis_adapters.kubernetes.status import (
    START_ERRORS,
    Verdict,
    container_started,
    judge_job,
    judge_pod,
    waiting_reason,
)
from mis_adapters.map_follow import MapLog
from mis_core.errors import BackendUnavailable
from mis_core.model import JobOutcome, JobProgress, JobRequest

PROPAGATION = "Background"  # the Job goes at once; its pods follow through garbage collection
_RETRY_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0)
MAX_LOG_LINES = 10_000  # read at once when the MAP finished before its log could be followed
Connector = Callable[[str], Awaitable[tuple[Any, str]]]
Event = tuple[str, str, dict[str, Any]]  # (jobs|pods, ADDED|MODIFIED|DELETED, object)
LISTED = "LISTED"  # follows each (re)listing's ADDED events; its object: {"names": [...]}


class KubernetesJobBackend:
    def __init__(
        self,
        options: JobOptions,
        *,
        node_local: bool | None = None,
        delete_wait_seconds: float = 30,
        log_tail_lines: int = 20,
        connector: Connector = connect,
    ) -> None:
        self.options = options
        self.node_local = node_local
        self.delete_wait_seconds = delete_wait_seconds
        self.log_tail_lines = log_tail_lines
        self._connector = connector
        self._api: KubeApi | None = None
        self._resolved: JobOptions | None = None
        self._lock = anyio.Lock()
        self.warm_up_state = ""  # "", "pulling", "done", or the reason it failed

    async def api(self) -> KubeApi:
        async with self._lock:
            if self._api is None:
                api_client, namespace = await self._connector(self.options.namespace)
                self._api = KubeApi(api_client, namespace)
            return self._api

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()

    async def check(self) -> None:
        api = await self.api()
        try:
            await api.version()
        except KubeApiError as exc:
            raise BackendUnavailable(f"The Kubernetes API server answered {exc}.") from None
        if self.warm_up_state == "pulling":
            raise BackendUnavailable("The MAP's image is still being pulled onto the node.")
        if self.warm_up_state not in ("", "done"):
            raise BackendUnavailable(f"The MAP's image could not be pulled: {self.warm_up_state}")

    async def sweep(self) -> int:
        """Delete Jobs that an earlier MIS of this installation left behind (a crash)."""
        api = await self.api()
        listing = await api.list_objects("jobs", label_selector=instance_selector(self.options))
        for job in listing.get("items") or []:
            await api.delete_job(job["metadata"]["name"], PROPAGATION)
        return len(listing.get("items") or [])

    async def job_options(self) -> JobOptions:
        """The options with the namespace known and, for a node-local volume, the node pinned."""
        if self._resolved is None:
            api = await self.api()
            node = self.options.node_name if await self._payload_is_node_local(api) else ""
            self._resolved = attrs.evolve(self.options, namespace=api.namespace, node_name=node)
        return self._resolved

    async def _payload_is_node_local(self, api: KubeApi) -> bool:
        if self.node_local is not None:
            local = self.node_local
        elif self.options.host_path:
            local = True
        else:
            try:
                claim = await api.read_claim(self.options.claim_name)
                modes = set((claim.get("spec") or {}).get("accessModes") or [])
                local = not modes & {"ReadWriteMany", "ReadOnlyMany"}
            except KubeApiError as exc:
                logger.warning("cannot read the payload claim ({}); assuming ReadWriteOnce", exc)
                local = True
        if local and not self.options.node_name:
            logger.warning(
                "the payload volume is node-local but MIS does not know its node; set the "
                "NODE_NAME environment variable (downward API) or kubernetes.node_name"
            )
        return local

    async def run(self, request: JobRequest, progress: JobProgress) -> JobOutcome:
        api = await self.api()
        options = await self.job_options()
        name = job_name(options, request.request_id)
        try:
            await api.create_job(build_job(request, options))
        except KubeApiError as exc:
            if exc.status in (401, 403):
                raise BackendUnavailable(
                    f"MIS may not create Jobs in namespace {api.namespace} ({exc}). Check "
                    "the Role bound to its service account."
                ) from None
            return JobOutcome(False, f"could not be started: the API refused its Job ({exc})")
        logger.info("job {} created in namespace {}", name, api.namespace)
        selector = job_selector(options, request.request_id)
        follower = _Follower(api, name, selector, progress, self.log_tail_lines)
        finished = False
        try:
            verdict = await follower.follow()
            outcome = await self._outcome(api, verdict, follower)
            finished = True
            return outcome
        finally:
            with anyio.CancelScope(shield=True):
                await self._remove(api, name, selector, wait_for_pods=not finished)

    async def _outcome(self, api: KubeApi, verdict: Verdict, follower: _Follower) -> JobOutcome:
        tail = tuple(follower.map_log.tail)
        if not verdict.succeeded and follower.pod_name:
            # without a log (the container never started), keep what was streamed
            with contextlib.suppress(KubeApiError, BackendUnavailable):
                tail = tuple(await api.log_tail(follower.pod_name, CONTAINER, self.log_tail_lines))
        return JobOutcome(verdict.succeeded, verdict.reason, verdict.exit_code, tail)

    async def _remove(self, api: KubeApi, name: str, selector: str, wait_for_pods: bool) -> None:
        try:
            await api.delete_job(name, PROPAGATION)
            if wait_for_pods:
                with anyio.move_on_after(self.delete_wait_seconds) as waited:
                    await _pods_gone(api, selector)
                if waited.cancelled_caught:
                    logger.warning(
                        "the job's pod was still there {}s after deletion", self.delete_wait_seconds
                    )
            logger.info("job {} deleted", name)
        except (KubeApiError, BackendUnavailable) as exc:
            logger.error("could not delete job {} ({}); it is swept at the next start", name, exc)

    async def warm_up(self, request: JobRequest) -> None:
        """Pull the MAP's image onto the node before the first request (readiness waits)."""
        self.warm_up_state = "pulling"
        api = await self.api()
        options = await self.job_options()
        manifest = build_job(request, options)
        name = manifest["metadata"]["name"]
        manifest["spec"]["template"]["spec"]["containers"][0]["command"] = ["true"]
        manifest["spec"]["template"]["spec"]["containers"][0].pop("args", None)
        try:
            await api.create_job(manifest)
            self.warm_up_state = await _image_pulled(api, job_selector(options, request.request_id))
        except (KubeApiError, BackendUnavailable) as exc:
            self.warm_up_state = str(exc)
        finally:
            with anyio.CancelScope(shield=True):
                await self._remove(api, name, job_selector(options, request.request_id), False)
        logger.info("image warm-up finished: {}", self.warm_up_state)


class _Follower:
    """Watches one Job and its pod until an outcome is known, streaming the MAP's log."""

    def __init__(
        self, api: KubeApi, name: str, selector: str, progress: JobProgress, tail_lines: int
    ) -> None:
        self.api = api
        self.name = name
        self.selector = selector
        self.progress = progress
        self.map_log = MapLog(tail_lines)
        self.pod_name = ""
        self._log_done = anyio.Event()
        self._log_started = False
        self._pod_said: Verdict | None = None

    async def follow(self) -> Verdict:
        send, receive = anyio.create_memory_object_stream[Event | BaseException](math.inf)
        verdict: Verdict | None = None
        judged_by_job = False
        failure: BaseException | None = None  # raised after the task group, not inside a group
        async with anyio.create_task_group() as tg:
            field = {"field_selector": f"metadata.name={self.name}"}
            tg.start_soon(_watch_into, self.api, "jobs", field, send.clone())
            tg.start_soon(_watch_into, self.api, "pods", {"label_selector": self.selector}, send)
            async with receive:
                async for item in receive:
                    if isinstance(item, BaseException):
                        failure = item
                        break
                    if item[1] == LISTED:
                        continue
                    verdict = self._judge(item, tg)
                    if verdict is not None:
                        judged_by_job = item[0] == "jobs"
                        break
            if verdict is not None:
                await self._settle(judged_by_job)
                if judged_by_job and not verdict.succeeded:
                    verdict = self._pod_said or verdict
            tg.cancel_scope.cancel()
        if failure is not None:
            raise failure
        assert verdict is not None
        return verdict

    async def _settle(self, judged_by_job: bool) -> None:
        """Finish reading what the job left: the pod's own verdict, and its whole log."""
        if judged_by_job:
            # the Job's event may come before the pod's on the other stream: ask the pod
            with contextlib.suppress(KubeApiError, BackendUnavailable):
                self._pod_said = await self._pod_verdict()
        if self._log_started:
            with anyio.move_on_after(1):  # the log ends with the container: read it all
                await self._log_done.wait()
        elif self.pod_name:
            await self._read_log()  # it finished before MIS saw it run

    async def _pod_verdict(self) -> Verdict | None:
        """The pod's own verdict, read now: its event may trail the Job's on another stream."""
        listing = await self.api.list_objects("pods", label_selector=self.selector)
        for pod in listing.get("items") or []:
            self.pod_name = pod["metadata"]["name"]
            verdict = judge_pod(pod)
            if verdict is not None:
                return verdict
        return None

    def _judge(self, event: Event, tg: TaskGroup) -> Verdict | None:
        kind, change, obj = event
        if kind == "jobs":
            if change == "DELETED":
                return Verdict(False, "ran in a Job that was deleted before it finished")
            return judge_job(obj)
        self.pod_name = obj["metadata"]["name"]
        if change == "DELETED":
            return judge_pod(obj) or Verdict(
                False, "ran in a pod that was deleted before it finished"
            )
        if not self._log_started and container_started(obj):
            self._log_started = True
            tg.start_soon(self._stream_log)
        self.progress.waiting_reason = waiting_reason(obj)
        return judge_pod(obj)

    async def _read_log(self) -> None:
        with contextlib.suppress(KubeApiError, BackendUnavailable):
            for line in await self.api.log_tail(self.pod_name, CONTAINER, MAX_LOG_LINES):
                self.map_log.emit(line)

    async def _stream_log(self) -> None:
        try:
            async for line in self.api.follow_log(self.pod_name, CONTAINER):
                self.map_log.emit(line)
        except (KubeApiError, BackendUnavailable) as exc:
            logger.warning("could not stream the MAP's log: {}", exc)
        finally:
            self._log_done.set()


async def _watch_into(
    api: KubeApi,
    kind: str,
    selectors: dict[str, str],
    send: MemoryObjectSendStream[Event | BaseException],
) -> None:
    """List, then watch, forever: resume after a dropped stream, re-list after 410 Gone.

    Ends quietly when the receiving side has stopped listening.
    """
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        async with send:
            version = ""
            failures = 0
            while True:
                try:
                    if not version:
                        listing = await api.list_objects(kind, **selectors)
                        version = listing["metadata"]["resourceVersion"]
                        items = listing.get("items") or []
                        for obj in items:
                            await send.send((kind, "ADDED", obj))
                        names = [obj["metadata"]["name"] for obj in items]
                        await send.send((kind, LISTED, {"names": names}))
                    async for event in api.watch(kind, version, **selectors):
                        obj = event["object"]
                        version = obj["metadata"].get("resourceVersion") or version
                        if event["type"] != "BOOKMARK":
                            await send.send((kind, event["type"], obj))
                    failures = 0
                except KubeApiError as exc:
                    if exc.status != 410:
                        await send.send(BackendUnavailable(f"Watching {kind} failed: {exc}"))
                        return
                    logger.debug("the {} watch expired; listing again", kind)
                    version = ""
                except BackendUnavailable as exc:
                    delay = _RETRY_SECONDS[min(failures, len(_RETRY_SECONDS) - 1)]
                    failures += 1
                    logger.warning(
                        "the {} watch was cut ({}); retrying in {}s", kind, exc.message, delay
                    )
                    await anyio.sleep(delay)


async def _pods_gone(api: KubeApi, selector: str) -> None:
    """Return once no pod matches `selector`, as the watch's own listings and events tell."""
    send, receive = anyio.create_memory_object_stream[Event | BaseException](math.inf)
    failure: BaseException | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_into, api, "pods", {"label_selector": selector}, send)
        present: set[str] | None = None  # unknown until the first listing
        async with receive:
            async for item in receive:
                if isinstance(item, BaseException):
                    failure = item
                    break
                _, change, obj = item
                if change == LISTED:
                    present = set(obj["names"])
                elif present is not None and change == "DELETED":
                    present.discard(obj["metadata"]["name"])
                elif present is not None:
                    present.add(obj["metadata"]["name"])
                if present == set():
                    break
        tg.cancel_scope.cancel()
    if failure is not None:
        raise failure


async def _image_pulled(api: KubeApi, selector: str) -> str:
    """ "done" once the warm-up pod's container has started (or failed after its pull)."""
    send, receive = anyio.create_memory_object_stream[Event | BaseException](math.inf)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch_into, api, "pods", {"label_selector": selector}, send)
        state = ""
        async with receive:
            async for item in receive:
                if isinstance(item, BaseException):
                    state = str(item)
                    break
                if item[1] == LISTED:
                    continue
                pod = item[2]
                verdict = judge_pod(pod)
                waiting = [
                    (c.get("state") or {}).get("waiting", {}).get("reason")
                    for c in (pod.get("status") or {}).get("containerStatuses") or []
                ]
                if container_started(pod) or any(r in START_ERRORS for r in waiting):
                    state = "done"
                elif verdict is not None and not verdict.succeeded:
                    state = verdict.reason
                if state:
                    break
        tg.cancel_scope.cancel()
    return state
