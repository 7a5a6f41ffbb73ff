"""What a real cluster does to a Job's watches, its log and the Job itself, against the double.

kubernetes-asyncio talks HTTP to the API double while `tests/k8s/watch_faults.py` silences or
cuts its streams, refuses requests, deletes the Job as `kubectl` would, or evicts the pod as a
kubelet, the Eviction API, the scheduler or the taint manager would. Each test measures what
the fault cost (printed as `cost:` lines, for the README) and asserts a bound on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from loguru import logger
from pydantic import ValidationError

from mis_adapters.kubernetes.backend import KubernetesJobBackend
from mis_app import bootstrap
from mis_app.settings import KubernetesSettings, Settings
from mis_core.model import JobOutcome, JobProgress, JobRequest
from tests.k8s import kubelet
from tests.k8s.double import Behaviour, KubeDouble
from tests.k8s.helpers import backend_for, request_in, wait_for_calls
from tests.k8s.watch_faults import (
    DISRUPTION_MESSAGES,
    LOW_MEMORY,
    client_delete,
    disrupt,
    evict,
)

pytestmark = pytest.mark.anyio
NS = "mis-test"
SILENCE_BOUND = 10  # seconds a silent watch may add to a study (resync_seconds is 5)
REPORT_BOUND = 5  # seconds from a deletion or an eviction to the request's outcome


def cost(what: str, seconds: float) -> None:
    print(f"cost: {what}: {seconds:.2f}s")


def warnings_while() -> tuple[list[str], int]:
    lines: list[str] = []
    return lines, logger.add(lambda m: lines.append(m.record["message"]), level="WARNING")


def ending_with(
    fault: Callable[[KubeDouble], None], finish: Behaviour, at: list[float]
) -> Behaviour:
    """Once MIS watches both the Job and its pod, `fault`, then `finish`'s story (the time it
    ended goes into `at`)."""

    async def story(double: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
        await double.calls_made("", "pods", "watch")
        await double.calls_made("batch", "jobs", "watch")
        fault(double)
        await finish(double, ns, job, pod)
        at.append(time.monotonic())

    return story


async def run_to_outcome(backend: KubernetesJobBackend, request: JobRequest) -> JobOutcome:
    try:
        with anyio.fail_after(30):
            return await backend.run(request, JobProgress())
    finally:
        await backend.close()


@pytest.mark.parametrize("silent", [("jobs",), ("pods",), ("jobs", "pods")], ids="+".join)
async def test_a_silent_watch_costs_a_study_at_most_a_resync(
    double: KubeDouble, tmp_path: Path, silent: tuple[str, ...]
) -> None:
    """The watches go silent mid-stream and never close (a load balancer dropped them): the
    Job's end comes through another watch, or through the watch MIS opens again from the last
    version it saw after `resync_seconds` of silence; nothing is listed again."""
    finished: list[float] = []
    double.behaviour = ending_with(
        lambda kube: kube.streams.drop(*silent), kubelet.finishes(0, lines=["done"]), finished
    )
    backend = backend_for(tmp_path)
    outcome = await run_to_outcome(backend, request_in(tmp_path))
    late = time.monotonic() - finished[0]
    cost(f"silent {'+'.join(silent)} watch", late)
    assert outcome.succeeded
    assert sum(double.streams.withheld[kind] for kind in silent) > 0  # the fault did hold events
    assert late < SILENCE_BOUND
    if len(silent) == 2:  # only a watch opened again could tell
        assert sum(backend.watch_counts.resyncs.values()) >= 1
    assert (double.count("batch", "jobs", "list"), double.count("", "pods", "list")) == (1, 1)
    assert double.items("jobs") == []


async def test_watches_that_stay_silent_are_read_around_by_listing(
    double: KubeDouble, tmp_path: Path
) -> None:
    """Every stream, the ones opened again included, stays silent while lists are answered (a
    buffering proxy): the second resync in a row lists again and finds the Job's end."""
    finished: list[float] = []
    double.behaviour = ending_with(
        lambda kube: kube.streams.silence("jobs", "pods"),
        kubelet.finishes(0, lines=["done"]),
        finished,
    )
    backend = backend_for(tmp_path, resync_seconds=1)
    outcome = await run_to_outcome(backend, request_in(tmp_path))
    late = time.monotonic() - finished[0]
    cost("watches silent for good, resync 1 s", late)
    assert outcome.succeeded
    assert late < 2 * 1 + 2  # two resyncs, then a listing
    assert double.count("batch", "jobs", "list") + double.count("", "pods", "list") >= 3
    assert double.items("jobs") == []


TRANSIENT = {
    "reset": lambda kube: kube.streams.reset("jobs", "pods"),
    "503": lambda kube: _refused_then_reset(kube, 503),
    "429": lambda kube: _refused_then_reset(kube, 429),
    "error-event-500": lambda kube: [kube.streams.error_event(k, 500) for k in ("jobs", "pods")],
}


def _refused_then_reset(kube: KubeDouble, code: int) -> None:
    for kind in ("jobs", "pods"):
        kube.streams.refuse(kind, code, times=3)
    kube.streams.reset("jobs", "pods")


@pytest.mark.parametrize("fault", list(TRANSIENT))
async def test_a_cut_or_refused_watch_reconnects(
    double: KubeDouble, tmp_path: Path, fault: str
) -> None:
    """Cut mid-stream, answered 503 or 429, or sent a 500 ERROR event: MIS watches again from
    the last version it saw (the Job's end meanwhile is not missed), within its back-off."""
    finished: list[float] = []
    double.behaviour = ending_with(TRANSIENT[fault], kubelet.finishes(0), finished)
    backend = backend_for(tmp_path)
    outcome = await run_to_outcome(backend, request_in(tmp_path))
    late = time.monotonic() - finished[0]
    cost(f"watch {fault}", late)
    assert outcome.succeeded
    assert backend.watch_counts.restarts["pods", "error"] >= 1
    assert backend.watch_counts.restarts["jobs", "error"] >= 1
    assert not backend.watch_counts.resyncs  # reconnecting did it, not a resync
    assert late < 4


async def fault_while_running(
    double: KubeDouble, tmp_path: Path, fault: Callable[[], None], silent: bool = False
) -> tuple[JobOutcome, float, KubernetesJobBackend]:
    """Run a MAP that never ends; once MIS follows its log, `fault` (in a thread): the outcome
    and the seconds from the fault to it (the Job and its pod removed)."""
    double.behaviour = kubelet.hangs()
    backend = backend_for(tmp_path)
    outcome: list[JobOutcome] = []

    async def request() -> None:
        outcome.append(await backend.run(request_in(tmp_path), JobProgress()))

    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(request)
                await wait_for_calls(double, "", "pods/log", "get")
                if silent:  # the watches open (the log may be followed first), then dropped
                    await wait_for_calls(double, "batch", "jobs", "watch")
                    await wait_for_calls(double, "", "pods", "watch")
                    double.call(double.streams.drop, "jobs", "pods")  # after they opened
                started = time.monotonic()
                await anyio.to_thread.run_sync(fault)
            seconds = time.monotonic() - started
    finally:
        await backend.close()
    assert double.items("jobs") == []
    return outcome[0], seconds, backend


def the_pod(double: KubeDouble) -> str:
    return str(double.items("pods")[0]["metadata"]["name"])


@pytest.mark.parametrize("silent", [False, True], ids=["watched", "silent-watches"])
async def test_a_job_deleted_outside_mis_fails_at_once_saying_so(
    double: KubeDouble, tmp_path: Path, silent: bool
) -> None:
    def delete() -> None:
        client_delete(double, "jobs", double.items("jobs")[0]["metadata"]["name"])

    outcome, seconds, _ = await fault_while_running(double, tmp_path, delete, silent)
    cost(f"Job deleted ({'silent watches' if silent else 'watched'})", seconds)
    assert not outcome.succeeded
    assert outcome.reason == "ran in a Job that was deleted outside MIS before it finished"
    assert seconds < (SILENCE_BOUND if silent else REPORT_BOUND)
    assert double.items("pods") == []  # it was running: MIS waited for it to go
    assert (double.streams.withheld["jobs"] > 0) is silent  # the dropped watch missed it


async def test_a_pod_deleted_outside_mis_fails_at_once_saying_so(
    double: KubeDouble, tmp_path: Path
) -> None:
    def delete() -> None:
        client_delete(double, "pods", the_pod(double))

    outcome, seconds, _ = await fault_while_running(double, tmp_path, delete)
    cost("pod deleted", seconds)
    assert outcome.reason == "ran in a pod that was deleted outside MIS before it finished"
    assert seconds < REPORT_BOUND
    assert double.items("pods") == []


async def test_a_pod_evicted_by_its_kubelet_names_the_kubelets_reason(
    double: KubeDouble, tmp_path: Path
) -> None:
    def evict_it() -> None:
        double.call(evict, double, NS, the_pod(double))

    outcome, seconds, _ = await fault_while_running(double, tmp_path, evict_it)
    cost("pod evicted by the kubelet", seconds)
    assert outcome.reason == (
        f"ran in a pod that was evicted by its node's kubelet (Evicted: {LOW_MEMORY})"
    )
    assert outcome.exit_code == 137
    assert seconds < REPORT_BOUND


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        ("EvictionByEvictionAPI", "was evicted through the Eviction API"),
        ("PreemptionByScheduler", "was preempted by the scheduler for a pod of higher priority"),
        ("DeletionByTaintManager", "its node is tainted NoExecute (unreachable or not ready)"),
    ],
)
async def test_a_disrupted_pod_names_who_stopped_it_and_why(
    double: KubeDouble, tmp_path: Path, reason: str, said: str
) -> None:
    def disrupt_it() -> None:
        double.call(disrupt, double, NS, the_pod(double), reason)

    outcome, seconds, _ = await fault_while_running(double, tmp_path, disrupt_it)
    cost(f"pod disrupted ({reason})", seconds)
    assert outcome.reason.startswith("ran in a pod that ")
    assert said in outcome.reason
    assert DISRUPTION_MESSAGES[reason] in outcome.reason
    assert seconds < REPORT_BOUND
    assert double.items("pods") == []


def log_fails(kube: KubeDouble) -> None:
    kube.streams.refuse("pods/log", 500)  # every later read, the tail's too
    kube.streams.reset("pods/log")  # and the stream MIS follows is cut


@pytest.mark.parametrize(
    ("fault", "code"),
    [(log_fails, 0), (log_fails, 3), (None, 0)],
    ids=["fails-exit-0", "fails-exit-3", "silent-exit-0"],
)
async def test_a_failing_log_read_loses_no_result(
    double: KubeDouble, tmp_path: Path, fault: Callable[[KubeDouble], None] | None, code: int
) -> None:
    """Cut and refused (or, with no `fault`, silent for good): the outcome still comes, and
    MIS's log says the MAP's log is unavailable from there on."""
    fail = fault or (lambda kube: kube.streams.silence("pods/log"))
    finished: list[float] = []

    async def story(kube: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
        kubelet._running(kube, ns, job, pod)
        kube.log(pod, "before")
        await kube.calls_made("", "pods/log", "get")  # MIS follows the log
        await ending_with(fail, kubelet.finishes(code, "Error", ["after"]), finished)(
            kube, ns, job, pod
        )

    double.behaviour = story
    backend = backend_for(tmp_path)
    warnings, sink = warnings_while()
    try:
        outcome = await run_to_outcome(backend, request_in(tmp_path))
    finally:
        logger.remove(sink)
    late = time.monotonic() - finished[0]
    cost(f"log read {'fails' if fault else 'silent'} (exit {code})", late)
    assert outcome.succeeded is (code == 0)
    if code:
        assert outcome.reason == f"exited with code {code}"
        assert outcome.log_tail[-1].startswith("[the rest of its log is unavailable: ")
    if fault:
        assert any("the MAP's log could not be read" in w for w in warnings)
        assert late < 3
    else:
        assert late < 5 + 3  # the log's end is awaited for LOG_END_SECONDS


async def test_the_warm_up_has_a_bound_and_then_mis_is_ready(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.behaviour = kubelet.unschedulable("0/1 nodes are available: 1 Insufficient cpu.")
    backend = backend_for(tmp_path, warm_up_timeout_seconds=1)
    warnings, sink = warnings_while()
    try:
        with anyio.fail_after(10):
            await backend.warm_up(request_in(tmp_path, "warm-up"))
        await backend.check()  # ready: the first request pulls, if it must
    finally:
        logger.remove(sink)
        await backend.close()
    assert backend.warm_up_state == ""
    assert any("1 Insufficient cpu" in w and "not on the node 1s" in w for w in warnings)
    assert double.items("jobs") == []


def test_the_watch_settings_reach_the_backend() -> None:
    settings = Settings.model_validate(
        {
            "backend": "kubernetes",
            "map": {"image": "map:1"},
            "kubernetes": {
                "payload_volume": {"claim_name": "payload"},
                "resync_seconds": 2,
                "warm_up_timeout_seconds": 60,
            },
        }
    )
    backend = bootstrap.build_backend(settings).jobs
    assert isinstance(backend, KubernetesJobBackend)
    assert (backend.options.resync_seconds, backend.options.warm_up_timeout_seconds) == (2, 60)
    with pytest.raises(ValidationError, match="resync_seconds"):
        KubernetesSettings.model_validate({"resync_seconds": 0})
