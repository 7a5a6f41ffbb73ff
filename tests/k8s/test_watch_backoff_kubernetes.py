"""A watch's reconnections keep the API's manners: its back-off, a 429's Retry-After, one 401.

`list_then_watch` on real kubernetes-asyncio against the API double, whose watches are
refused (`faults.py`) or fail as soon as they open (`watch_faults.py`); the times between the
double's watch requests show how long MIS waited.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable

import attrs
import pytest

from mis_adapters.kubernetes.api import KubeApi
from mis_adapters.kubernetes.credentials import Credentials, connect
from mis_adapters.kubernetes.errors import Refused
from mis_adapters.kubernetes.retry import RetryPolicy
from mis_adapters.kubernetes.watch import Listed, Watch, Watcher, list_then_watch, watching
from mis_core.errors import BackendUnavailable
from tests.k8s.double import KubeDouble
from tests.k8s.helpers import wait_for_calls

pytestmark = pytest.mark.anyio
PODS = Watch("pods", {})


@attrs.define
class CountedReloads:
    """MIS's credentials, counting how often they were read again."""

    inner: Credentials
    reloads: int = 0

    async def reload(self) -> None:
        self.reloads += 1
        await self.inner.reload()


@attrs.frozen
class Subject:
    watcher: Watcher
    retries: Counter[tuple[str, str]]  # the API calls tried again, as the metric counts them
    credentials: CountedReloads


@contextlib.asynccontextmanager
async def subject(resync_seconds: float) -> AsyncIterator[Subject]:
    """A watcher on the double (KUBECONFIG names it), as the backend builds one."""
    retries: Counter[tuple[str, str]] = Counter()
    connection = await connect("mis-test")
    credentials = CountedReloads(connection.credentials)
    policy = RetryPolicy(10, lambda verb, reason: retries.update([(verb, reason)]))
    api = KubeApi(attrs.evolve(connection, credentials=credentials), policy)
    try:
        yield Subject(Watcher(api, resync_seconds), retries, credentials)
    finally:
        await api.close()


async def seconds_to_watch(double: KubeDouble, watcher: Watcher, count: int) -> float:
    """From the pods' first listing to the double's `count`-th pods watch that got through."""
    started = time.monotonic()
    async with watching(watcher, PODS) as events:
        assert isinstance(await anext(events), Listed)
        await wait_for_calls(double, "", "pods", "watch", count)
        return time.monotonic() - started


@pytest.mark.parametrize(
    ("retry_after", "resync_seconds"), [(1, 5.0), (2, 1.0)], ids=["within-resync", "beyond-resync"]
)
async def test_a_429_on_a_watch_waits_its_retry_after(
    double: KubeDouble, retry_after: int, resync_seconds: float
) -> None:
    """The watch is opened once: its reconnection alone waits what the server asked for, even
    past `resync_seconds`, and the wait is no silence (no call retried inside it, no resync)."""
    double.faults.answer("pods", "watch", 429, retry_after=str(retry_after))
    async with subject(resync_seconds) as it:
        seconds = await seconds_to_watch(double, it.watcher, 1)
    print(f"a watch answered 429 with Retry-After: {retry_after}: watched again {seconds:.2f}s")
    assert retry_after <= seconds < retry_after + 1
    assert double.faults.count("429") == 1
    assert not it.retries
    assert it.watcher.counts.restarts == {("pods", "error"): 1}
    assert not it.watcher.counts.resyncs


async def test_a_watch_that_keeps_failing_backs_off(double: KubeDouble) -> None:
    """Five watches in a row end with a 500 ERROR event as they open: the waits between them
    grow (0.1 s doubling to 1 s, jittered down to half), they do not hammer the server."""
    double.streams.fail("pods", 500, times=5)
    async with subject(5.0) as it:
        seconds = await seconds_to_watch(double, it.watcher, 6)
    print(f"five failed watches in a row: watched again {seconds:.2f}s")
    assert 1.2 <= seconds < 4  # the five waits add up to 1.25-2.5 s
    assert it.watcher.counts.restarts == {("pods", "error"): 5}
    assert not it.watcher.counts.resyncs


async def test_streams_ended_at_once_again_and_again_are_opened_after_a_back_off(
    double: KubeDouble,
) -> None:
    """Six watches in a row end at once with nothing sent (a proxy closing every stream): the
    first is opened again at once, as after a server's routine end; then the waits grow, so
    the server is not asked in a busy loop (without them, six reopens take milliseconds)."""
    double.streams.close_at_once("pods", 6)
    async with subject(5.0) as it:
        seconds = await seconds_to_watch(double, it.watcher, 7)
    print(f"six watches ended at once in a row: watched again {seconds:.2f}s")
    assert 1.2 <= seconds < 4  # waits after the 2nd to 6th: 0.05-0.1 s doubling, 1.25-2.5 s
    assert it.watcher.counts.restarts == {("pods", "closed"): 6}
    assert not it.watcher.counts.resyncs


async def test_a_401_on_a_watch_reads_the_credentials_again_once(double: KubeDouble) -> None:
    double.streams.fail("pods", 401, times=1)
    async with subject(5.0) as it:
        await seconds_to_watch(double, it.watcher, 2)  # the watch went on after reading again
    assert it.credentials.reloads == 1
    assert not it.watcher.counts.restarts


async def test_a_second_401_before_any_event_ends_the_watch(double: KubeDouble) -> None:
    double.streams.fail("pods", 401, times=2)
    async with subject(5.0) as it:
        events = list_then_watch(it.watcher, PODS)
        async with contextlib.aclosing(events):
            assert isinstance(await anext(events), Listed)
            with pytest.raises(BackendUnavailable, match="Watching pods failed: 401"):
                await anext(events)
    assert it.credentials.reloads == 1
    assert double.count("", "pods", "watch") == 2


async def refused_tries(
    double: KubeDouble, it: Subject, call: Awaitable[object]
) -> tuple[int, int]:
    """The 401s the double answered to `call`, and the credentials' re-reads, as it fails."""
    refused, reloads = double.faults.count("401"), it.credentials.reloads
    with pytest.raises((BackendUnavailable, Refused), match="401"):
        await call
    return double.faults.count("401") - refused, it.credentials.reloads - reloads


@pytest.mark.parametrize("refused_from", ["listing", "watch"])
async def test_a_watch_refused_every_token_tries_as_a_call_does(
    double: KubeDouble, refused_from: str
) -> None:
    """An API refusing every token (from the listing, or only once the watch opens): the watch
    reads the credentials again once and tries twice, as a plain call does."""
    async with subject(5.0) as it:
        events = list_then_watch(it.watcher, PODS)
        async with contextlib.aclosing(events):
            if refused_from == "watch":
                assert isinstance(await anext(events), Listed)
            double.faults.accept_only("someone else's")
            watched = await refused_tries(double, it, anext(events))
        called = await refused_tries(double, it, it.watcher.api.list_objects("pods"))
    assert called == (2, 1)
    assert watched == called


async def test_an_outage_is_reconnecting_not_silence(double: KubeDouble) -> None:
    """Every call reset for 2 s, with `resync_seconds` shorter than that: each open fails at
    once and the watch's own loop backs off, so the outage counts as restarts, not resyncs, and
    no call is retried inside the watch's."""
    async with subject(0.5) as it, watching(it.watcher, PODS) as events:
        assert isinstance(await anext(events), Listed)
        opened = double.count("", "pods", "watch")
        double.faults.outage(2)
        await wait_for_calls(double, "", "pods", "watch", opened + 1)  # one got through after
        counts = it.watcher.counts
        assert counts.restarts["pods", "error"] >= 2, counts
        assert not counts.resyncs
        assert not it.retries
