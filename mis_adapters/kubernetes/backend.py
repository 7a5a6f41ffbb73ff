"""The Kubernetes backend: one batch/v1 Job per request, followed by watching, not polling.

The Job and its Pod are watched (`follower.py`). The first of these decides the outcome:
the container finishing (exit code, OOMKilled), an image or container error the pod cannot get
past (it fails at once, not at the timeout), or the Job's own conditions. While the pod cannot
be scheduled, the scheduler's reason is kept for the timeout message. The MAP's log is
streamed into MIS's log. Whatever happens, the Job is deleted with its pods; when the job is
stopped early, or its pod is still stopping (evicted, deleted by someone else), MIS waits
(within a bound) for the pod to be gone before the workspace goes. Every wait has a bound: the
watches resync (`watch.py`), log reads and the warm-up give up after theirs.
At start-up, only Jobs whose owner is dead are swept (`ownership.py`). API calls are tried
again while that is safe (`retry.py`); an API outage that lasts to the request's deadline ends
the request as that outage, not as the MAP's timeout.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from typing import NoReturn

import anyio
from loguru import logger
from prometheus_client.registry import Collector

from mis_adapters.kubernetes.api import KubeApi
from mis_adapters.kubernetes.credentials import Connection, connect
from mis_adapters.kubernetes.errors import KubeApiError, not_created
from mis_adapters.kubernetes.follower import (
    API_FAILURES,
    JobFollower,
    image_pulled,
    job_appears,
    pods_gone,
)
from mis_adapters.kubernetes.job import (
    JobOptions,
    build_job,
    instance_selector,
    job_name,
    job_selector,
)
from mis_adapters.kubernetes.metrics import ApiRetries, WatchCollector
from mis_adapters.kubernetes.options import KubernetesOptions
from mis_adapters.kubernetes.outcome import job_outcome
from mis_adapters.kubernetes.ownership import Owner
from mis_adapters.kubernetes.placement import claim_modes_needed, place
from mis_adapters.kubernetes.retry import ApiHealth, RetryPolicy, transient
from mis_adapters.kubernetes.sweep import sweep_leftovers
from mis_adapters.kubernetes.watch import WatchCounts, Watcher
from mis_core.errors import BackendUnavailable
from mis_core.model import JobOutcome, JobProgress, JobRequest

PROPAGATION = "Background"  # the Job goes at once; its pods follow through garbage collection
OUTAGE_MARGIN_SECONDS = 0.2  # before the request's deadline: time to say it was an outage
OUTAGE_MIN_SECONDS = 1.0  # a blip at the deadline does not make a MAP's timeout an outage
READY_RETRY_SECONDS = 1.5  # a probe's retries: one 429 (Retry-After: 1) or 5xx is no outage
# The Job's deletion at the end of a request is retried at most this long: after an outage the
# answer is not held back for api_retry_max_seconds (activeDeadlineSeconds stops a Job left).
CLEANUP_SECONDS = 2.0
LATE_CREATE_SECONDS = 5.0  # how long a Job whose create was cut short is watched for
Connector = Callable[[str], Awaitable[Connection]]


class KubernetesJobBackend:
    def __init__(
        self,
        options: KubernetesOptions,
        *,
        connector: Connector = connect,
        owner: Owner,
    ) -> None:
        """`connector`: how the API is reached (tests: the double); `owner`: MIS's pod."""
        self.options = options
        self.job = options.job  # as configured: resolved by `job_options`
        self.watch_counts = WatchCounts()  # read by the metrics
        self.api_retries: Counter[tuple[str, str]] = Counter()  # (verb, reason): retries
        self.health = ApiHealth()
        self._policy = RetryPolicy(options.api_retry_max_seconds, self._count_retry)
        self.owner = owner
        self._connector = connector
        self._api: KubeApi | None = None
        self._resolved: JobOptions | None = None
        self._lock = anyio.Lock()
        self.claim_problem = ""  # why the payload claim could not be read, if it could not
        self.placement_warning = ""  # node-local payload, but MIS's node unknown
        self.warm_up_state = ""  # "", "pulling", "done", or the reason it failed

    async def api(self) -> KubeApi:
        async with self._lock:
            if self._api is None:
                connection = await self._connector(self.job.namespace)
                self._api = KubeApi(connection, self._policy, self.health)
            return self._api

    def _count_retry(self, verb: str, reason: str) -> None:
        self.api_retries[verb, reason] += 1

    def metrics_collectors(self) -> list[Collector]:
        return [WatchCollector(self.watch_counts), ApiRetries(self.api_retries)]

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()

    async def check(self) -> None:
        api = await self.api()
        try:
            await api.version(budget=READY_RETRY_SECONDS)
        except KubeApiError as exc:
            raise BackendUnavailable(f"The Kubernetes API server answered {exc}.") from exc
        if self.warm_up_state == "pulling":
            raise BackendUnavailable("The MAP's image is still being pulled onto the node.")
        if self.warm_up_state not in ("", "done"):
            raise BackendUnavailable(f"The MAP's image could not be pulled: {self.warm_up_state}")

    async def sweep(self) -> int:
        """Delete the Jobs of this installation that a dead MIS left behind; keep the rest."""
        api = await self.api()
        return await sweep_leftovers(api, instance_selector(self.job), self.owner, PROPAGATION)

    async def job_options(self) -> JobOptions:
        """The options with the namespace known and, for a node-local volume, the node pinned."""
        if self._resolved is None:
            api = await self.api()
            modes = None
            if claim_modes_needed(self.job.node_local, self.job.host_path):
                modes = await self._claim_modes(api)
            self._resolved, self.placement_warning = place(self.job, api.namespace, modes)
            if self.placement_warning:
                logger.warning("{}", self.placement_warning)
        return self._resolved

    async def _claim_modes(self, api: KubeApi) -> list[str] | None:
        try:
            claim = await api.read_claim(self.job.claim_name)
        except KubeApiError as exc:
            self.claim_problem = f"cannot read the payload claim ({exc})"
            logger.warning("{}; assuming ReadWriteOnce", self.claim_problem)
            return None
        return list((claim.get("spec") or {}).get("accessModes") or [])

    async def run(self, request: JobRequest, progress: JobProgress) -> JobOutcome:
        """The Job's outcome. An API outage that lasts until just before the request's deadline
        ends the request as that outage, not as the MAP's timeout."""
        deadline = anyio.current_effective_deadline() - OUTAGE_MARGIN_SECONDS
        prepared = False
        with anyio.CancelScope(deadline=deadline):
            api = await self.api()
            options = await self.job_options()
            prepared = True
        if not prepared:
            await self._at_deadline(self.health.outage(OUTAGE_MIN_SECONDS))
        return await self._run(api, options, request, progress, deadline)

    async def _run(
        self,
        api: KubeApi,
        options: JobOptions,
        request: JobRequest,
        progress: JobProgress,
        deadline: float,
    ) -> JobOutcome:
        name = job_name(options, request.job_id)
        selector = job_selector(options, request.job_id)
        may_exist = unsure = pod_stopped = False
        outage = ""
        try:
            with anyio.CancelScope(deadline=deadline):
                create = api.attempts("create")
                may_exist = unsure = True  # from the first try of the create on, until it answers
                try:
                    await api.create_job(build_job(request, options, self.owner), create)
                except KubeApiError as exc:  # an answer: the Job was not created
                    may_exist = False
                    return not_created(api.namespace, exc)
                unsure = False
                logger.info("job {} created in namespace {}", name, api.namespace)
                follower = JobFollower(
                    self._watcher(api),
                    name,
                    selector,
                    progress,
                    self.options.map_log_bytes,
                )
                verdict = await follower.follow()
                outcome = await job_outcome(api, verdict, follower)
                pod_stopped = not verdict.pod_may_run
                return outcome
            outage = self.health.outage(OUTAGE_MIN_SECONDS)  # reached when the deadline came first
        finally:
            if may_exist:
                with anyio.CancelScope(shield=True):
                    budget = min(CLEANUP_SECONDS, self._policy.max_seconds)
                    unsure = unsure and create.unsure  # not when each try was refused
                    await self._remove(api, name, selector, not pod_stopped, budget, unsure)
        return await self._at_deadline(outage)

    def _watcher(self, api: KubeApi) -> Watcher:
        return Watcher(api, self.options.resync_seconds, self.watch_counts)

    async def _at_deadline(self, outage: str) -> NoReturn:
        """Just before the request's deadline: an outage is said; else the deadline comes."""
        if outage:
            raise BackendUnavailable(outage)
        await anyio.sleep_forever()  # the request's own deadline ends it as a timeout
        raise AssertionError("the request's deadline cancels the wait")

    async def _remove(
        self,
        api: KubeApi,
        name: str,
        selector: str,
        wait_for_pods: bool,
        budget: float | None,
        unsure: bool = False,
    ) -> None:
        """Delete the Job, retried for `budget` (None: api_retry_max_seconds). `unsure`: its
        create was cut short, so the server may still make it: MIS watches for it a while."""
        try:
            if not await api.delete_job(name, PROPAGATION, budget) and unsure:
                with anyio.move_on_after(LATE_CREATE_SECONDS):
                    await job_appears(self._watcher(api), name)
                    await api.delete_job(name, PROPAGATION, budget)
                    logger.warning("job {} was created after MIS gave up on it: deleted", name)
            if wait_for_pods:
                with anyio.move_on_after(self.options.delete_wait_seconds) as waited:
                    await pods_gone(self._watcher(api), selector)
                if waited.cancelled_caught:
                    logger.warning(
                        "the job's pod was still there {}s after deletion",
                        self.options.delete_wait_seconds,
                    )
            logger.info("job {} deleted", name)
        except API_FAILURES as exc:
            logger.error(
                "could not delete job {} ({}); its activeDeadlineSeconds stops it, and it is "
                "swept at MIS's next start",
                name,
                exc,
            )

    async def warm_up(self, request: JobRequest) -> None:
        """Pull the MAP's image onto the node before the first request (readiness waits).

        A failed pull, or a refusal of the Job asking again would repeat (403, 422), keeps MIS
        unready, saying why; an API that does not answer, throttles or fails inside gives the
        warm-up up, and readiness follows the API: a blip at start-up must not leave MIS
        unready until a restart. `request` is this MIS's own (replicas must not meet)."""
        self.warm_up_state = "pulling"
        try:
            api = await self.api()
            options = await self.job_options()
        except API_FAILURES as exc:  # no connection, or the API gave no answer in time
            self._warm_up_failed(exc)
            return
        manifest = build_job(request, options, self.owner)
        container = manifest["spec"]["template"]["spec"]["containers"][0]
        container["command"] = ["true"]
        container.pop("args", None)
        selector = job_selector(options, request.job_id)
        progress = JobProgress()
        create = api.attempts("create")
        created = False
        try:
            await api.create_job(manifest, create)
            created = True
            with anyio.move_on_after(self.options.warm_up_timeout_seconds):
                self.warm_up_state = await image_pulled(self._watcher(api), selector, progress)
        except API_FAILURES as exc:
            self._warm_up_failed(exc)
        finally:
            if created or create.unsure:  # never a Job of that name that a refusal met
                with anyio.CancelScope(shield=True):
                    name, unsure = manifest["metadata"]["name"], not created
                    await self._remove(api, name, selector, False, None, unsure)
        if self.warm_up_state == "pulling":
            waiting = f" ({progress.waiting_reason})" if progress.waiting_reason else ""
            logger.warning(
                "the MAP's image was not on the node {:g}s after the warm-up began{}; MIS is "
                "ready anyway, and the first request may wait for the pull",
                self.options.warm_up_timeout_seconds,
                waiting,
            )
            self.warm_up_state = ""
        logger.info("image warm-up finished: {}", self.warm_up_state)

    def _warm_up_failed(self, cause: Exception) -> None:
        """A refusal is the warm-up's verdict; what may pass on its own gives it up."""
        refusal = cause if isinstance(cause, KubeApiError) else cause.__cause__
        if isinstance(refusal, KubeApiError) and not transient(refusal.code):
            self.warm_up_state = str(cause)
            logger.error("image warm-up failed: {}", cause)
            return
        self.warm_up_state = ""
        logger.warning(
            "image warm-up given up, the Kubernetes API failed: {}; MIS is ready when the API "
            "answers, and the first request may wait for the pull",
            cause,
        )
