"""API faults in combination, and the answers a real server (or what stands in front of it) may
send that the single-fault tests do not: a throttled readiness probe, an outage at clean-up,
Retry-After of zero, below zero or as an HTTP date, watches that leak other objects' events,
a 401 on a watch after the credentials changed.

Real kubernetes-asyncio over real HTTP to the API double (`faults.py`, `watch_faults.py`).
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from loguru import logger

from mis_adapters.kubernetes.job import ANNOTATION_REQUEST_ID, job_name
from mis_core.errors import BackendUnavailable
from mis_core.model import JobOutcome, JobProgress, MapSpec, Resources
from tests.k8s import kubelet
from tests.k8s.double import Behaviour, KubeDouble
from tests.k8s.helpers import backend_for, request_in, run, wait_for_calls
from tests.k8s.test_api_faults import creations, runs_for
from tests.k8s.test_watch_faults_kubernetes import ending_with

pytestmark = pytest.mark.anyio


async def test_readiness_rides_out_a_throttled_probe(double: KubeDouble, tmp_path: Path) -> None:
    """One 429 (API Priority and Fairness asks for a second) or one 503 is not an outage."""
    backend = backend_for(tmp_path)
    try:
        double.faults.answer("version", "get", 429, retry_after="1")
        await backend.check()
        double.faults.answer("version", "get", 503)
        await backend.check()
        double.faults.answer("version", "get", 503, times=1000)  # this one lasts
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=r"answered 503.*control plane"):
            await backend.check()
        assert time.monotonic() - started < 4  # a probe still answers within its timeout
    finally:
        await backend.close()
    assert double.faults.count("429") == 1


async def test_a_lasting_throttle_is_not_called_a_control_plane_failure(
    double: KubeDouble, tmp_path: Path
) -> None:
    """A server that keeps answering 429 is up: the advice is about MIS's share of it."""
    backend = backend_for(tmp_path)
    try:
        double.faults.answer("version", "get", 429, times=1000, retry_after="1")
        with pytest.raises(BackendUnavailable) as refused:
            await backend.check()
    finally:
        await backend.close()
    message = str(refused.value)
    assert "answered 429" in message, message
    assert "throttling MIS" in message, message
    assert "control plane" not in message, message


async def test_an_outage_past_the_timeout_is_answered_soon_after_it(
    double: KubeDouble, tmp_path: Path
) -> None:
    """The default api_retry_max_seconds (10 s) does not delay the answer: inside a request the
    Job's deletion is tried briefly; its activeDeadlineSeconds stops it, as the log says."""
    double.behaviour = runs_for(1, outage=60)
    spec = MapSpec(image="example/map:1", resources=Resources(), timeout_seconds=3)
    backend = backend_for(tmp_path)
    errors: list[str] = []
    sink = logger.add(lambda m: errors.append(m.record["message"]), level="ERROR")
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailable, match=r"did not answer for \d s"):
            with anyio.fail_after(3):
                await backend.run(request_in(tmp_path, "req-long", spec), JobProgress())
        took = time.monotonic() - started
    finally:
        logger.remove(sink)
        double.faults.outage_until = 0
        await backend.close()
    print(f"an outage past a 3 s timeout was answered after {took:.2f} s")
    assert took < 3 + 3
    assert any("activeDeadlineSeconds" in line for line in errors), errors


@pytest.mark.parametrize("header", ["0", "-5"])
async def test_a_retry_after_of_no_wait_is_not_a_busy_loop(
    double: KubeDouble, tmp_path: Path, header: str
) -> None:
    """A throttling server (or a proxy) that asks for no wait still gets MIS's back-off."""
    double.faults.answer("jobs", "create", 429, times=100_000, retry_after=header)
    backend = backend_for(tmp_path)
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailable, match="answered 429"):
            with anyio.fail_after(2):
                await backend.run(request_in(tmp_path, "req-throttled"), JobProgress())
    finally:
        await backend.close()
    tries = double.faults.count("429")  # answered in front of the routes' request log
    print(f"Retry-After: {header}: {tries} creates in 2 s")
    assert tries <= 15
    # every try was refused, so no Job can come late: none is waited for
    assert time.monotonic() - started < 3


async def test_a_retry_after_given_as_an_http_date_is_honoured(
    double: KubeDouble, tmp_path: Path
) -> None:
    """RFC 9110 allows a date; a proxy in front of the API may send one."""
    double.behaviour = kubelet.finishes(0)
    when = email.utils.formatdate(time.time() + 3, usegmt=True)  # whole seconds: 2-3 s away
    double.faults.answer("jobs", "create", 429, retry_after=when)
    backend = backend_for(tmp_path)
    started = time.monotonic()
    try:
        outcome = await run(backend, request_in(tmp_path, "req-dated"))
    finally:
        await backend.close()
    assert outcome.succeeded, outcome.reason
    assert time.monotonic() - started >= 1.5


def by_request(stories: dict[str, Behaviour]) -> Behaviour:
    """The story of each Job's pod, chosen by its request id."""

    async def story(double: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
        request_id = job["metadata"]["annotations"][ANNOTATION_REQUEST_ID]
        await stories[request_id](double, ns, job, pod)

    return story


async def test_events_of_other_objects_decide_no_request(
    double: KubeDouble, tmp_path: Path
) -> None:
    """Watches that send every Job's and pod's events (selectors ignored on the way): one
    request's success or deletion is not another's."""
    double.streams.leak("jobs", "pods")

    async def slow(kube: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
        kubelet._scheduled(kube, ns, job, pod)
        kubelet._running(kube, ns, job, pod)
        kube.log(pod, "slow at work")
        await kube.calls_made("batch", "jobs", "delete")  # the fast one is done and gone
        await kubelet.finishes(3, "Error", lines=["slow gives up"])(kube, ns, job, pod)

    double.behaviour = by_request({"slow": slow, "fast": kubelet.finishes(0, lines=["fast"])})
    backend = backend_for(tmp_path)
    outcomes: dict[str, JobOutcome] = {}

    async def request(request_id: str) -> None:
        outcomes[request_id] = await run(backend, request_in(tmp_path, request_id), seconds=20)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(request, "slow")
            await wait_for_calls(double, "", "pods/log", "get")
            tg.start_soon(request, "fast")
    finally:
        await backend.close()
    assert outcomes["fast"].succeeded, outcomes["fast"].reason
    assert outcomes["fast"].log_tail == ("fast",)
    assert not outcomes["slow"].succeeded
    assert outcomes["slow"].reason == "exited with code 3"
    assert outcomes["slow"].log_tail[-1] == "slow gives up"


def renew_kubeconfig(token: str) -> Callable[[KubeDouble], None]:
    def renew(kube: KubeDouble) -> None:
        path = Path(os.environ["KUBECONFIG"])
        config = yaml.safe_load(path.read_text())
        config["users"][0]["user"]["token"] = token
        path.write_text(yaml.safe_dump(config))
        kube.faults.accept_only(token)

    return renew


@pytest.mark.parametrize("how", ["reconnect", "error-event"])
async def test_a_watch_refused_401_reads_the_credentials_again_and_goes_on(
    double: KubeDouble, tmp_path: Path, how: str
) -> None:
    """The kubeconfig's token changed while the watches were open; the old one is refused: a
    watch that reconnects (cut) or is sent a 401 error event reads the credentials again."""
    renew = renew_kubeconfig("renewed-token")

    def fault(kube: KubeDouble) -> None:
        renew(kube)
        for key in ("jobs", "pods"):
            if how == "reconnect":
                kube.streams.reset(key)
            else:
                kube.streams.error_event(key, 401)

    finished: list[float] = []
    double.behaviour = ending_with(fault, kubelet.finishes(0), finished)
    backend = backend_for(tmp_path)
    try:
        outcome = await run(backend, request_in(tmp_path, f"req-401-{how}"), seconds=20)
    finally:
        await backend.close()
    assert outcome.succeeded, outcome.reason
    assert time.monotonic() - finished[0] < 4


async def test_a_refused_log_does_not_make_a_timeout_an_outage(
    double: KubeDouble, tmp_path: Path
) -> None:
    """The pod's log is refused (500: the kubelet behind the API cannot be reached) while the
    API itself answers: a MAP that runs past its timeout is a timeout, not an API outage."""
    double.behaviour = kubelet.hangs()
    double.streams.refuse("pods/log", 500)
    spec = MapSpec(image="example/map:1", resources=Resources(), timeout_seconds=3)
    backend = backend_for(tmp_path)
    try:
        with pytest.raises(TimeoutError):
            with anyio.fail_after(3):  # the request's deadline, as the service sets it
                await backend.run(request_in(tmp_path, "req-no-log", spec), JobProgress())
    finally:
        await backend.close()
    assert double.items("jobs") == []


async def test_a_create_the_server_carries_out_after_mis_gave_up_leaves_no_job(
    double: KubeDouble, tmp_path: Path
) -> None:
    """The server is slower than the request's time: MIS gave up on the create (a timeout),
    and the server makes the Job afterwards. MIS watches for it a while and deletes it."""
    double.behaviour = kubelet.hangs()
    double.faults.late("jobs", "create", 2.5)
    spec = MapSpec(image="example/map:1", resources=Resources(), timeout_seconds=2)
    backend = backend_for(tmp_path)
    name = job_name(backend.job, "req-late")
    try:
        with pytest.raises(TimeoutError):
            with anyio.fail_after(2):
                await backend.run(request_in(tmp_path, "req-late", spec), JobProgress())
    finally:
        await backend.close()
    await wait_for_calls(double, "batch", "jobs", "create")  # the routes see it only late
    assert creations(double, name) == 1  # the server did make it, after MIS gave up
    assert double.items("jobs") == []
    assert double.items("pods") == []


def through_an_outage(during: Callable[[KubeDouble, str, dict[str, Any], str], None]) -> Behaviour:
    """Running; an outage of 2 s begins, `during` it the cluster changes; once MIS watches
    the Job again (the outage is over: the double answers no call during one), done."""

    async def story(double: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
        kubelet._scheduled(double, ns, job, pod)
        kubelet._running(double, ns, job, pod)
        await double.calls_made("", "pods/log", "get")  # MIS follows the MAP
        watches = double.count("batch", "jobs", "watch")
        double.faults.outage(2)
        during(double, ns, job, pod)
        await double.calls_made("batch", "jobs", "watch", watches + 1)
        if ("pods", ns, pod) in double.objects:
            await kubelet.finishes(0, lines=["after the outage"])(double, ns, job, pod)

    return story


async def test_a_version_compacted_during_an_outage_is_listed_again(
    double: KubeDouble, tmp_path: Path
) -> None:
    """The watches come back to a 410 Gone: MIS lists again and sees the Job's end."""
    double.behaviour = through_an_outage(lambda kube, *_: kube.compact())
    backend = backend_for(tmp_path)
    try:
        outcome = await run(backend, request_in(tmp_path, "req-410"), seconds=15)
    finally:
        await backend.close()
    assert outcome.succeeded, outcome.reason
    restarts = backend.watch_counts.restarts
    assert restarts["jobs", "expired"] + restarts["pods", "expired"] >= 1  # the first back decides


async def test_a_job_deleted_during_an_outage_is_said_after_it(
    double: KubeDouble, tmp_path: Path
) -> None:
    """Deleted by someone else while MIS could not watch, and compacted: the listing after the
    outage no longer holds the Job."""

    def delete(kube: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
        kube.put("jobs", ns, kube.objects[("jobs", ns, job["metadata"]["name"])], "DELETED")
        asyncio.get_running_loop().create_task(kube.delete_pod(ns, pod))
        kube.compact()

    double.behaviour = through_an_outage(delete)
    backend = backend_for(tmp_path)
    try:
        outcome = await run(backend, request_in(tmp_path, "req-gone"), seconds=15)
    finally:
        await backend.close()
    assert outcome.reason == "ran in a Job that was deleted outside MIS before it finished"
