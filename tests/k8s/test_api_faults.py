"""Kubernetes API faults, injected into the API double: what MIS retries, and what it costs.

Real kubernetes-asyncio over real HTTP; the double answers 429 with Retry-After, 5xx before or
after doing the work, resets connections and goes away for seconds (`faults.py`).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from mis_adapters.kubernetes.backend import KubernetesJobBackend
from mis_adapters.kubernetes.job import job_name
from mis_core.errors import BackendUnavailable
from mis_core.model import JobOutcome, JobProgress, MapSpec, Resources
from tests.k8s import kubelet
from tests.k8s.double import Behaviour, KubeDouble
from tests.k8s.helpers import backend_for, request_in, run, wait_for_calls

pytestmark = pytest.mark.anyio


def creations(double: KubeDouble, name: str) -> int:
    """How many times the double created a Job of this name (not: how often MIS asked)."""
    return sum(
        1
        for _, resource, change, obj in list(double.history)
        if resource == "jobs" and change == "ADDED" and obj["metadata"]["name"] == name
    )


def runs_for(seconds: float, outage: float = 0) -> Behaviour:
    """Running for `seconds`, then done; an API outage of `outage` s starts as it runs."""

    async def story(double: KubeDouble, ns: str, job: dict[str, Any], pod: str) -> None:
        double.update_status("pods", ns, pod, phase="Running", containerStatuses=[])
        if outage:
            double.faults.outage(outage)
        double.log(pod, "working")
        await asyncio.sleep(seconds)
        await kubelet.finishes(0, lines=["done"])(double, ns, job, pod)

    return story


async def timed_run(backend: KubernetesJobBackend, tmp_path: Path, job_id: str) -> float:
    started = time.monotonic()
    outcome = await run(backend, request_in(tmp_path, job_id), seconds=30)
    assert outcome.succeeded, outcome.reason
    return time.monotonic() - started


async def test_a_429_waits_the_retry_after_it_names(double: KubeDouble, tmp_path: Path) -> None:
    double.behaviour = kubelet.finishes(0)
    double.faults.answer("jobs", "create", 429, retry_after="1")
    backend = backend_for(tmp_path)
    try:
        seconds = await timed_run(backend, tmp_path, "req-429")
    finally:
        await backend.close()
    print(f"a 429 with Retry-After: 1 on the create: the study took {seconds:.2f} s")
    assert seconds >= 1.0
    assert double.faults.count("429") == 1
    assert creations(double, job_name(backend.job, "req-429")) == 1
    assert backend.api_retries == {("create", "429"): 1}


async def test_every_verb_is_retried_after_5xx_and_resets(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.behaviour = kubelet.finishes(0, lines=["one", "two"])
    faults = double.faults
    for resource, verb in [("jobs", "list"), ("jobs", "watch"), ("pods", "watch")]:
        faults.answer(resource, verb, 503, times=2)
    faults.answer("pods/log", "get", 502)
    faults.reset("pods", "list", times=2)  # aiohttp itself sends a GET once more
    faults.reset("jobs", "create")  # not a POST: that is MIS's to try again
    faults.answer("jobs", "delete", 504)
    backend = backend_for(tmp_path)
    try:
        outcome = await run(backend, request_in(tmp_path, "req-5xx"), seconds=20)
    finally:
        await backend.close()
    assert outcome.succeeded, outcome.reason
    assert double.items("jobs") == []  # the delete, retried, went through
    assert faults.count("503") >= 2  # the watches that were opened before the outcome
    assert faults.count("reset") == 3
    # each but aiohttp's: by the call's own retries, or a watch's (tried once) reconnections
    restarts = backend.watch_counts.restarts
    watches = restarts["jobs", "error"] + restarts["pods", "error"]
    assert sum(backend.api_retries.values()) + watches == len(faults.injected) - 1
    assert not any(verb == "watch" for verb, _ in backend.api_retries)
    assert backend.api_retries[("list", "connection")] == 1
    assert backend.api_retries[("create", "connection")] == 1
    assert double.count("batch", "jobs", "create") == 1  # the reset came before any work
    assert backend.api_retries[("delete", "504")] == 1


@pytest.mark.parametrize("answer", [500, 0], ids=["500-after-create", "dropped-after-create"])
async def test_an_ambiguous_create_makes_one_job(
    double: KubeDouble, tmp_path: Path, answer: int
) -> None:
    """The double creates the Job, then answers 500 or drops the connection; MIS tries again."""
    double.behaviour = kubelet.finishes(0)
    backend = backend_for(tmp_path)
    try:
        await timed_run(backend, tmp_path, "req-warm")  # the connection made, the loop warm
        calm = await timed_run(backend, tmp_path, "req-calm")
        double.faults.after_work("jobs", "create", answer)
        ambiguous = await timed_run(backend, tmp_path, "req-ambiguous")
    finally:
        await backend.close()
    print(f"an ambiguous create ({answer or 'dropped'}) cost {ambiguous - calm:.3f} s")
    assert double.count("batch", "jobs", "create") == 4  # 2 calm, then a retry met the Job: 409
    assert creations(double, job_name(backend.job, "req-ambiguous")) == 1
    assert ("batch", "jobs", "get") not in double.verbs()  # the chart's Role grants list only
    pods = [p for _, r, c, p in double.history if r == "pods" and c == "ADDED"]
    assert len(pods) == 3  # one for each study


async def test_answers_cut_after_their_headers_are_tried_again(
    double: KubeDouble, tmp_path: Path
) -> None:
    """The double carries the call out and sends the headers, then the connection closes."""
    double.behaviour = kubelet.finishes(0)
    double.faults.cut_answer("jobs", "create")
    double.faults.cut_answer("jobs", "list")
    backend = backend_for(tmp_path)
    try:
        outcome = await run(backend, request_in(tmp_path, "req-cut"))
    finally:
        await backend.close()
    assert outcome.succeeded, outcome.reason
    assert double.faults.count("cut_answer") == 2
    assert creations(double, job_name(backend.job, "req-cut")) == 1
    assert backend.api_retries[("create", "connection")] == 1
    assert backend.api_retries[("list", "connection")] == 1


async def test_a_409_for_another_owners_job_is_not_taken_for_ours(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.behaviour = kubelet.hangs()
    earlier = backend_for(tmp_path)  # another MIS process: another owner token
    later = backend_for(tmp_path)
    request = request_in(tmp_path, "req-twice")
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(earlier.run, request, JobProgress())
            await wait_for_calls(double, "", "pods/log", "get")
            double.faults.answer("jobs", "create", 503)  # the later create is ambiguous
            outcome: JobOutcome = await run(later, request)
            assert len(double.items("jobs")) == 1  # the earlier MIS's Job is left alone
            tg.cancel_scope.cancel()
    finally:
        await earlier.close()
        await later.close()
    assert not outcome.succeeded
    assert "already exists" in outcome.reason


async def test_random_429_and_503_on_a_fifth_of_calls_fail_no_study(
    double: KubeDouble, tmp_path: Path
) -> None:
    """50 studies in a row, a fifth of all calls failed (seeded): each succeeds, one Job each."""
    double.behaviour = kubelet.finishes(0, lines=["segmenting"])
    double.faults.at_random(0.2, (429, 503), seed=20261207)
    backend = backend_for(tmp_path)
    seconds = []
    try:
        for n in range(50):
            seconds.append(await timed_run(backend, tmp_path, f"study-{n}"))
    finally:
        await backend.close()
    for n in range(50):
        assert creations(double, job_name(backend.job, f"study-{n}")) == 1
    assert double.items("jobs") == []
    injected = double.faults.injected
    assert len(injected) >= 40  # about a fifth of ~8 calls a study
    assert any(what.endswith("after work") for resource, verb, what in injected if verb == "create")
    print(f"random faults: {len(injected)} injected; study {min(seconds):.3f}-{max(seconds):.3f} s")


async def test_an_outage_while_the_map_runs_costs_at_most_the_outage(
    double: KubeDouble, tmp_path: Path
) -> None:
    backend = backend_for(tmp_path)
    try:
        double.behaviour = runs_for(1.5)
        baseline = await timed_run(backend, tmp_path, "req-calm")
        double.behaviour = runs_for(1.5, outage=6)
        with_outage = await timed_run(backend, tmp_path, "req-outage")
    finally:
        await backend.close()
    cost = with_outage - baseline
    print(f"a 6 s outage while a 1.5 s MAP ran cost {cost:.2f} s")
    assert double.faults.count("reset") > 0
    assert cost <= 6.0


async def test_an_outage_past_the_timeout_ends_the_request_naming_it(
    double: KubeDouble, tmp_path: Path
) -> None:
    double.behaviour = runs_for(1, outage=30)
    spec = MapSpec(image="example/map:1", resources=Resources(), timeout_seconds=3)
    backend = backend_for(tmp_path, api_retry_max_seconds=1)
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailable, match=r"did not answer for \d s") as raised:
            with anyio.fail_after(3):  # the request's deadline, as the service sets it
                await backend.run(request_in(tmp_path, "req-long", spec), JobProgress())
        ended = time.monotonic() - started
        assert "cannot be reached" in raised.value.message
        print(f"an outage past a 3 s timeout ended the request after {ended:.2f} s")
        assert backend.health.outage()  # what /readyz reports meanwhile
    finally:
        double.faults.outage_until = 0
        await backend.close()
