"""Faults for the API double's streams, and what third parties do to Jobs, driven by tests.

A stream is a watch ("jobs", "pods") or a followed log ("pods/log"), named by that key:

- `drop(key)`: its open streams withhold every byte from now on and never close, as a watch
  whose connection a load balancer dropped does; streams opened later speak.
- `silence(key)`: as `drop`, and the streams opened from now on are silent too, until
  `speak(key)` (a stream that was silent stays so).
- `reset(key)`: its open streams are cut mid-stream (the connection closes inside the chunked
  body, as a restarting proxy cuts it).
- `error_event(key, code)`: its open watches get an ERROR event with that code and end.
- `fail(key, code, times)`: its next `times` watches are opened, then at once get an ERROR
  event with that code and end (a server that fails every stream it starts).
- `close_at_once(key, times)`: its next `times` watches are answered 200 and end with nothing
  sent (a proxy that closes every stream it is asked for).
- `refuse(key, code, times)`: its next requests (watches, log reads) are answered with a
  Status of that code (a 503 or 429 for a watch, a 500 for a log read).
- `leak(key)`: its watches also send the events of objects their selectors do not match, as a
  proxy that drops the query would.

Third parties: `evict` (a kubelet whose node runs short of memory), `disrupt` (the Eviction
API, the scheduler's preemption, the taint manager: a DisruptionTarget condition, then the
pod's deletion), `client_delete` (`kubectl delete` over HTTP).

The fault switches may be called from any thread; `evict` and `disrupt` run on the double's
loop (`double.call`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, NamedTuple

import httpx
from starlette.responses import JSONResponse

if TYPE_CHECKING:
    from tests.k8s.double import KubeDouble

LOW_MEMORY = (
    "The node was low on resource: memory. Threshold quantity: 100Mi, available: 87Mi. "
    "Container map was using 1843Mi, request is 1Gi, has larger consumption of memory."
)
# The messages the controllers that set a DisruptionTarget condition write.
DISRUPTION_MESSAGES = {
    "EvictionByEvictionAPI": "Eviction API: evicting",
    "PreemptionByScheduler": "default-scheduler: preempting to accommodate a higher priority pod",
    "DeletionByTaintManager": "Taint manager: deleting due to NoExecute taint",
    "TerminationByKubelet": LOW_MEMORY,
}


class StreamCut(Exception):
    """Raised inside a streamed body: uvicorn then closes the connection mid-body."""


class _QuietCuts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCut))


logging.getLogger("uvicorn.error").addFilter(_QuietCuts())


class WatchFaults:
    def __init__(self) -> None:
        self.silent: set[str] = set()
        self.leaky: set[str] = set()  # watches that ignore their selectors
        self.withheld: Counter[str] = Counter()  # chunks held back, by key
        self.cut: Counter[str] = Counter()  # streams cut, by key
        self._resets: Counter[str] = Counter()
        self._drops: Counter[str] = Counter()
        self._errors: dict[str, tuple[int, int]] = {}  # key: (generation, code)
        self._failing: dict[str, list[int]] = {}  # key: the codes its next streams end with
        self._closing: Counter[str] = Counter()  # key: its next streams that end at once
        self._refusals: dict[str, tuple[int, int | None]] = {}  # key: (code, times left)
        self._wakers: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    # -- switches (any thread) ------------------------------------------------------------
    def drop(self, *keys: str) -> None:
        for key in keys:
            self._drops[key] += 1
        self._wake()

    def silence(self, *keys: str) -> None:
        self.silent.update(keys)
        self.drop(*keys)

    def speak(self, *keys: str) -> None:
        """New streams of `keys` speak again (those already silent stay so)."""
        self.silent.difference_update(keys)

    def reset(self, *keys: str) -> None:
        for key in keys:
            self._resets[key] += 1
        self._wake()

    def error_event(self, key: str, code: int) -> None:
        generation = self._errors.get(key, (0, 0))[0] + 1
        self._errors[key] = (generation, code)
        self._wake()

    def fail(self, key: str, code: int, times: int) -> None:
        self._failing[key] = [code] * times

    def close_at_once(self, key: str, times: int) -> None:
        self._closing[key] = times

    def leak(self, *keys: str) -> None:
        self.leaky.update(keys)

    def refuse(self, key: str, code: int, times: int | None = None) -> None:
        """Answer the next `times` requests for `key` (all, for None) with `code`."""
        self._refusals[key] = (code, times)

    def clear(self) -> None:
        self.silent.clear()
        self.leaky.clear()
        self._refusals.clear()

    # -- hooks (the double's routes call these) --------------------------------------------
    def refusal(self, key: str) -> JSONResponse | None:
        if key not in self._refusals:
            return None
        code, times = self._refusals[key]
        if times is not None:
            if times <= 1:
                del self._refusals[key]
            else:
                self._refusals[key] = (code, times - 1)
        reason = {429: "TooManyRequests", 503: "ServiceUnavailable"}.get(code, "InternalError")
        body = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"the double refuses {key} ({code}, a fault a test asked for)",
            "reason": reason,
            "code": code,
        }
        return JSONResponse(body, status_code=code)

    def stream(self, key: str, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`chunks`, as the faults switched on for `key` let them through.

        Called while the request is handled: `chunks` starts at once (as it would unwrapped,
        so the events it sees from are those of the request's moment)."""
        if self._failing.get(key):
            return _failed(self._failing[key].pop(0))
        if self._closing[key] > 0:
            self._closing[key] -= 1
            return _nothing()
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        pump = loop.create_task(_pump(chunks, queue))
        opened = _Opened(
            self._resets[key],
            self._errors.get(key, (0, 0))[0],
            self._drops[key],
            key in self.silent,
        )
        return self._relay(key, queue, pump, (loop, asyncio.Event()), opened)

    async def _relay(
        self,
        key: str,
        queue: asyncio.Queue[bytes | None],
        pump: asyncio.Task[None],
        waker: tuple[asyncio.AbstractEventLoop, asyncio.Event],
        opened: _Opened,
    ) -> AsyncIterator[bytes]:
        self._wakers.add(waker)
        silent = opened.silent
        try:
            while True:
                if self._resets[key] != opened.resets:
                    self.cut[key] += 1
                    raise StreamCut(key)
                generation, code = self._errors.get(key, (0, 0))
                if generation != opened.errors:
                    yield _error_event(code)
                    return
                chunk = await _next(queue, waker[1])
                silent = silent or self._drops[key] != opened.drops
                if silent:
                    self.withheld[key] += chunk is not None and chunk is not _WOKEN
                elif chunk is None:
                    return
                elif chunk is not _WOKEN:
                    yield chunk
        finally:
            self._wakers.discard(waker)
            pump.cancel()

    def _wake(self) -> None:
        for loop, event in list(self._wakers):
            loop.call_soon_threadsafe(event.set)


class _Opened(NamedTuple):
    """The faults' generations when a stream was opened: later ones act on it."""

    resets: int
    errors: int
    drops: int
    silent: bool


_WOKEN = b"<woken>"  # a fault changed: look again


async def _pump(chunks: AsyncIterator[bytes], queue: asyncio.Queue[bytes | None]) -> None:
    try:
        async for chunk in chunks:
            queue.put_nowait(chunk)
    finally:
        queue.put_nowait(None)


async def _next(queue: asyncio.Queue[bytes | None], woken: asyncio.Event) -> bytes | None:
    """The next chunk (None: the stream ended), or `_WOKEN` when a fault switch was flipped."""
    getting = asyncio.ensure_future(queue.get())
    waking = asyncio.ensure_future(woken.wait())
    try:
        await asyncio.wait({getting, waking}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waking.cancel()
        if not getting.done():
            getting.cancel()
    woken.clear()
    return getting.result() if getting.done() and not getting.cancelled() else _WOKEN


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""


async def _failed(code: int) -> AsyncIterator[bytes]:
    yield _error_event(code)


def _error_event(code: int) -> bytes:
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "InternalError",
        "message": f"an error on the server ({code}) has prevented the request from succeeding",
        "code": code,
    }
    return (json.dumps({"type": "ERROR", "object": status}) + "\n").encode()


# -- third parties ------------------------------------------------------------------------
def evict(double: KubeDouble, ns: str, pod: str, message: str = LOW_MEMORY) -> None:
    """What a kubelet does when its node runs short of memory: it kills the pod's containers at
    once and marks the pod Failed, reason Evicted, with a DisruptionTarget condition; the Job
    controller then fails the Job (backoffLimit 0)."""
    _stop_kubelet(double, pod)
    obj = double.objects[("pods", ns, pod)]
    status = obj.get("status") or {}
    conditions = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"]
    conditions.append(_target("TerminationByKubelet", message))
    containers = [
        {**c, "ready": False, "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}
        for c in status.get("containerStatuses") or []
    ]
    double.update_status(
        "pods", ns, pod, phase="Failed", reason="Evicted", message=message,
        conditions=conditions, containerStatuses=containers,
    )  # fmt: skip
    double.close_log(pod)
    _fail_job(double, ns, obj)


def disrupt(double: KubeDouble, ns: str, pod: str, reason: str) -> None:
    """The Eviction API, the scheduler's preemption or the taint manager: a DisruptionTarget
    condition first, then the pod's deletion (its container stops; the Job then fails)."""
    obj = double.objects[("pods", ns, pod)]
    conditions = list((obj.get("status") or {}).get("conditions") or [])
    conditions.append(_target(reason, DISRUPTION_MESSAGES[reason]))
    double.update_status("pods", ns, pod, conditions=conditions)

    async def delete_then_fail() -> None:
        await double.delete_pod(ns, pod)
        _fail_job(double, ns, obj)

    asyncio.get_running_loop().create_task(delete_then_fail())


def client_delete(double: KubeDouble, resource: str, name: str, ns: str = "mis-test") -> None:
    """`kubectl delete` (background propagation) over HTTP, as a third party would."""
    group = "/apis/batch/v1" if resource == "jobs" else "/api/v1"
    url = f"{double.url}{group}/namespaces/{ns}/{resource}/{name}"
    response = httpx.delete(url, params={"propagationPolicy": "Background"}, timeout=10)
    response.raise_for_status()


def _target(reason: str, message: str) -> dict[str, Any]:
    return {"type": "DisruptionTarget", "status": "True", "reason": reason, "message": message}


def _stop_kubelet(double: KubeDouble, pod: str) -> None:
    task = double.kubelets.pop(pod, None)
    if task is not None:
        task.cancel()


def _fail_job(double: KubeDouble, ns: str, pod: dict[str, Any]) -> None:
    name = pod["metadata"]["labels"]["job-name"]
    condition = {
        "type": "Failed",
        "status": "True",
        "reason": "BackoffLimitExceeded",
        "message": "Job has reached the specified backoff limit",
    }
    double.update_status("jobs", ns, name, failed=1, conditions=[condition])
