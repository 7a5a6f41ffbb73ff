"""Faults of a real API server, injected into the API double from tests.

An ASGI layer in front of the double's routes. Tests queue faults per (resource, verb) or
set them for every call: a status with Retry-After (API Priority and Fairness' 429, an
upgrading server's 5xx), a failure after the work was done (the double creates the Job, then
answers 500 or drops the connection: an ambiguous create), a connection reset before any
work, a call carried out only seconds later (its client may have given up), an outage of N
seconds (open watches are cut, every call is reset), a share of calls failed at random
(seeded), and bearer tokens the double accepts (others get 401). What was injected is kept in
`injected`, apart from the double's request log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Literal

import attrs
from starlette.types import ASGIApp as App
from starlette.types import Message, Receive, Scope, Send

How = Literal["status", "after", "reset", "drop_after", "cut_answer", "late"]


@attrs.frozen
class Fault:
    """What to do to one call: answer `status` (before or `after` the work), or cut it."""

    how: How
    status: int = 503
    retry_after: str | None = None
    seconds: float = 0  # "late": how long the server takes before it does the work


@attrs.define
class RandomFaults:
    rate: float
    statuses: Sequence[int]
    after_work: float  # the share of 5xx on create/delete answered after the work was done
    rng: random.Random


class Faults:
    def __init__(self, on_outage: Callable[[], None] = lambda: None) -> None:
        self.on_outage = on_outage  # cuts the open watches
        self.queued: dict[tuple[str, str], list[Fault]] = defaultdict(list)
        self.random: RandomFaults | None = None
        self.outage_until = 0.0
        self.tokens: frozenset[str] | None = None  # None: any token is accepted
        self.injected: list[tuple[str, str, str]] = []  # (resource, verb, what was done)
        self._lock = threading.Lock()

    # -- driven from tests ----------------------------------------------------------------
    def answer(
        self, resource: str, verb: str, status: int, times: int = 1, retry_after: str | None = None
    ) -> None:
        """The next `times` such calls get `status` (and Retry-After), before any work."""
        self._queue(resource, verb, Fault("status", status, retry_after), times)

    def after_work(self, resource: str, verb: str, status: int = 500, times: int = 1) -> None:
        """The next calls are carried out, then answered `status` (0: the connection drops)."""
        fault = Fault("drop_after") if status == 0 else Fault("after", status)
        self._queue(resource, verb, fault, times)

    def reset(self, resource: str, verb: str, times: int = 1) -> None:
        """The next calls have their connection reset before the server does anything."""
        self._queue(resource, verb, Fault("reset"), times)

    def cut_answer(self, resource: str, verb: str, times: int = 1) -> None:
        """The next calls are carried out; their answers are cut after the headers."""
        self._queue(resource, verb, Fault("cut_answer"), times)

    def late(self, resource: str, verb: str, seconds: float) -> None:
        """The next call is received whole, then carried out `seconds` later, whether or not
        its client is still waiting (an overloaded server, or etcd slow to commit)."""
        self._queue(resource, verb, Fault("late", seconds=seconds), 1)

    def outage(self, seconds: float) -> None:
        """For `seconds` from now every call is reset; open watch streams end now."""
        self.outage_until = time.monotonic() + seconds
        self.on_outage()

    def at_random(
        self, rate: float, statuses: Sequence[int], seed: int, after_work: float = 0.5
    ) -> None:
        self.random = RandomFaults(rate, tuple(statuses), after_work, random.Random(seed))

    def accept_only(self, *tokens: str) -> None:
        self.tokens = frozenset(tokens)

    def count(self, what: str) -> int:
        return sum(1 for *_, done in list(self.injected) if done == what)

    def _queue(self, resource: str, verb: str, fault: Fault, times: int) -> None:
        with self._lock:
            self.queued[resource, verb].extend([fault] * times)

    # -- on the double's loop -------------------------------------------------------------
    def wrap(self, app: App) -> App:
        async def faulty(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            resource, verb = classify(scope)
            fault = self._pick(scope, resource, verb)
            if fault is None:
                await app(scope, receive, send)
                return
            cuts = ("reset", "drop_after", "cut_answer", "late")
            what = fault.how if fault.how in cuts else str(fault.status)
            self.injected.append(
                (resource, verb, f"{what} after work" if fault.how == "after" else what)
            )
            if fault.how == "late":
                await app(scope, await _received_late(receive, fault.seconds), send)
                return
            if fault.how == "cut_answer":
                with contextlib.suppress(ConnectionResetError):
                    await app(scope, receive, _headers_only(send))
                return
            if fault.how in ("after", "drop_after"):
                await app(scope, receive, _swallow)  # the work is done; its answer is lost
            if fault.how in ("reset", "drop_after"):
                _cut(send)
                return
            await _status(send, fault)

        return faulty

    def _pick(self, scope: Scope, resource: str, verb: str) -> Fault | None:
        if time.monotonic() < self.outage_until:
            return Fault("reset")
        if self.tokens is not None and _bearer(scope) not in self.tokens:
            return Fault("status", 401)
        with self._lock:
            queued = self.queued.get((resource, verb))
            if queued:
                return queued.pop(0)
        chance = self.random
        if chance is None or chance.rng.random() >= chance.rate:
            return None
        status = chance.rng.choice(chance.statuses)
        mutating = verb in ("create", "delete") and status >= 500
        if mutating and chance.rng.random() < chance.after_work:
            return Fault("after", status)
        return Fault("status", status)


def classify(scope: Scope) -> tuple[str, str]:
    """(resource, verb) of a call as RBAC names them: jobs/create, pods/watch, pods/log/get."""
    parts = scope["path"].strip("/").split("/")
    if "namespaces" not in parts:
        return parts[0], "get"
    rest = parts[parts.index("namespaces") + 2 :]
    resource = "/".join(rest[::2])  # pods, pods/log
    method = scope["method"]
    if method in ("POST", "DELETE"):
        return resource, "create" if method == "POST" else "delete"
    if len(rest) > 1:
        return resource, "get"
    watching = b"watch=true" in scope.get("query_string", b"").lower()
    return resource, "watch" if watching else "list"


def _bearer(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return str(value.decode().removeprefix("Bearer ").strip())
    return ""


async def _received_late(receive: Receive, seconds: float) -> Receive:
    """The request's body read now, handed to the routes `seconds` later."""
    messages = [await receive()]
    while messages[-1].get("more_body"):
        messages.append(await receive())
    await asyncio.sleep(seconds)

    async def replay() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return replay


async def _swallow(message: Message) -> None:
    pass


def _headers_only(send: Send) -> Send:
    """A `send` that passes the answer's headers on, then cuts the connection."""

    async def cutting(message: Message) -> None:
        if message["type"] == "http.response.start":
            await send(message)
        elif message["type"] == "http.response.body":
            send.__self__.transport.close()  # type: ignore[attr-defined]  # headers flushed first
            raise ConnectionResetError("the answer is cut here")

    return cutting


async def _status(send: Send, fault: Fault) -> None:
    reasons = {401: "Unauthorized", 429: "TooManyRequests", 500: "InternalError"}
    reason = reasons.get(fault.status, "ServiceUnavailable")
    body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"injected fault: {fault.status}",
            "reason": reason,
            "code": fault.status,
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if fault.retry_after is not None:
        headers.append((b"retry-after", fault.retry_after.encode()))
    await send({"type": "http.response.start", "status": fault.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _cut(send: Send) -> None:
    """Reset the connection under this request (uvicorn's send is bound to its transport)."""
    transport = send.__self__.transport  # type: ignore[attr-defined]
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
