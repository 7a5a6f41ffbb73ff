"""Following Jobs and pods: list, then watch from the list's version, for as long as asked.

One async generator does it for every follower (the Job's outcome, its pod going away, the
warm-up pull): a stream that ended, was cut or fell silent is opened again from the last version
seen, and the server sends every change since; only a version it has compacted away (410 Gone)
means listing again. Each listing ends with a `Listed` marker naming what it held, so a follower
can tell "nothing there" from "not listed yet". `watching` merges several such streams into one,
in the order events arrive.

A watch can go silent without ever closing (a load balancer that dropped its connection, a
network partition), and the server sends bookmarks only about once a minute, so silence cannot
be told from a quiet Job: a watch that sent nothing for `resync_seconds` is given up and opened
again from its last version (a resync). That misses nothing a listing would show, as the server
replays what changed or answers 410; and a quiet Job costs a watch opened from the server's
cache, not a listing, each time. Only a path that withholds every stream's bytes while it
answers lists (a buffering proxy) would leave resyncs without news, so the second resync in a
row without an event lists again: a quiet Job costs one small listing every other resync, and
no path hides its end for longer than two.

A server ends a watch now and then (its `timeoutSeconds`), and it is opened again at once; a
stream ended again with no event between (a proxy that closes every stream) waits the back-off
first, so it is no busy loop. This loop alone retries a watch: each turn opens the stream once
(`KubeApi.watch`, where a 401 reads the credentials again), and an error the server may not
repeat (429, 5xx, a cut or refused connection) opens it again after the API's back-off
(`retry.backoff`, growing with the failures in a row, a 429's Retry-After included); any other
refusal ends it.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from loguru import logger

from mis_adapters.kubernetes.api import KubeApi
from mis_adapters.kubernetes.errors import Gone, KubeApiError
from mis_adapters.kubernetes.retry import GaveUp, backoff, transient
from mis_core.errors import BackendUnavailable
from mis_core.tasks import plain_task_group

Kind = Literal["jobs", "pods"]
LIST_SECONDS = 10.0  # a listing slower than this (and than resync_seconds) is retried
RELIST_AFTER_SILENCES = 2  # resyncs in a row without an event before the objects are listed


@attrs.frozen
class Change:
    """An object as one listing or watch event showed it."""

    kind: Kind
    type: Literal["ADDED", "MODIFIED", "DELETED"]
    obj: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


@attrs.frozen
class Listed:
    """Follows the `ADDED` changes of each (re)listing: the names that listing held."""

    kind: Kind
    names: frozenset[str]


Event = Change | Listed


@attrs.frozen
class Watch:
    """What to follow: a kind and the API's selectors (`label_selector`, `field_selector`)."""

    kind: Kind
    selectors: dict[str, str]


@attrs.define
class WatchCounts:
    """What the watches went through, for metrics.

    `restarts` by (kind, cause): "closed" (the server ended the stream), "expired" (410 Gone),
    "error" (a 429, a 5xx, a cut or refused connection); `resyncs` by kind: watches opened
    again from their last version after `resync_seconds` without an event.
    """

    restarts: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    resyncs: Counter[str] = attrs.field(factory=Counter)


@attrs.frozen
class Watcher:
    """The API, and how long a watch may stay silent before it is opened again."""

    api: KubeApi
    resync_seconds: float  # kubernetes.resync_seconds
    counts: WatchCounts = attrs.field(factory=WatchCounts)


async def list_then_watch(watcher: Watcher, watch: Watch) -> AsyncGenerator[Event]:
    """Events for `watch`, forever. A refusal that asking again cannot change is
    `BackendUnavailable`."""
    api, counts, kind = watcher.api, watcher.counts, watch.kind
    version = ""
    failures = 0  # since the last listing or event
    silences = 0  # resyncs since the last listing or event
    closes = 0  # streams the server ended since the last listing or event
    while True:
        try:
            if not version:
                with anyio.fail_after(max(watcher.resync_seconds, LIST_SECONDS)):
                    listing = await api.list_objects(kind, **watch.selectors)
                version = listing["metadata"]["resourceVersion"]
                items = [obj for obj in listing.get("items") or [] if selects(watch, obj)]
                for obj in items:
                    yield Change(kind, "ADDED", obj)
                yield Listed(kind, frozenset(obj["metadata"]["name"] for obj in items))
                failures = silences = closes = 0
            if closes > 1:  # ended again with nothing between: not a server's routine end
                await anyio.sleep(backoff(closes - 2))
            stream = api.watch(kind, version, **watch.selectors)
            async with contextlib.aclosing(stream) as events:
                while True:
                    with anyio.move_on_after(watcher.resync_seconds) as silence:
                        event = await anext(events, None)
                    if silence.cancelled_caught:
                        counts.resyncs[kind] += 1
                        silences += 1
                        if silences >= RELIST_AFTER_SILENCES:
                            version = ""  # a listing reads what the streams may be withholding
                        logger.debug("the {} watch was silent; again from {!r}", kind, version)
                        break
                    if event is None:
                        counts.restarts[kind, "closed"] += 1
                        closes += 1
                        break
                    failures = silences = closes = 0
                    obj = event["object"]
                    version = obj["metadata"].get("resourceVersion") or version
                    if event["type"] != "BOOKMARK" and selects(watch, obj):
                        yield Change(kind, event["type"], obj)
        except Gone:
            logger.debug("the {} watch expired; listing again", kind)
            counts.restarts[kind, "expired"] += 1
            version = ""
        except (KubeApiError, BackendUnavailable, TimeoutError) as exc:
            if isinstance(exc, KubeApiError) and not transient(exc.code):
                raise BackendUnavailable(f"Watching {kind} failed: {exc}") from exc
            counts.restarts[kind, "error"] += 1
            delay = backoff(failures, exc.retry_after if isinstance(exc, GaveUp) else None)
            say = logger.debug if failures else logger.warning  # an outage: once, not each try
            failures += 1
            say("the {} watch was cut ({}); retrying in {:.2f}s", kind, _why(exc), delay)
            await anyio.sleep(delay)


def selects(watch: Watch, obj: dict[str, Any]) -> bool:
    """Whether `obj` is one that `watch` asked for. The server filters by the selectors, but a
    proxy between may not: another request's Job must not decide this one."""
    metadata = obj.get("metadata") or {}
    labels = metadata.get("labels") or {}
    for key, value in _equalities(watch.selectors.get("label_selector", "")):
        if labels.get(key) != value:
            return False
    fields = {"metadata.name": metadata.get("name")}
    for key, value in _equalities(watch.selectors.get("field_selector", "")):
        if key in fields and fields[key] != value:
            return False
    return True


def _equalities(selector: str) -> list[tuple[str, str]]:
    """The `key=value` (or `key==value`) terms of a selector: the only kind MIS writes."""
    terms = []
    for term in filter(None, (part.strip() for part in selector.split(","))):
        key, equals, value = term.partition("=")
        if equals and not key.endswith("!"):
            terms.append((key.strip(), value.removeprefix("=").strip()))
    return terms


def _why(exc: Exception) -> str:
    if isinstance(exc, BackendUnavailable):
        return exc.message
    return str(exc) or "no answer in time"


class _Events:
    """The merged stream; it ends at the first failure, which `watching` raises on leaving."""

    def __init__(self, receive: MemoryObjectReceiveStream[Event | BackendUnavailable]) -> None:
        self._receive = receive
        self.failure: BackendUnavailable | None = None

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> Event:
        if self.failure is None:
            with contextlib.suppress(anyio.EndOfStream):
                item = await self._receive.receive()
                if not isinstance(item, BackendUnavailable):
                    return item
                self.failure = item
        raise StopAsyncIteration


@asynccontextmanager
async def watching(watcher: Watcher, *watches: Watch) -> AsyncIterator[_Events]:
    """The events of every watch in `watches`, merged, while the block runs.

    Failures (a watch refused, the block's own errors) are raised after the watches stopped,
    never from inside a task group, so callers catch them as they are.
    """
    send, receive = anyio.create_memory_object_stream[Event | BackendUnavailable](math.inf)
    events = _Events(receive)
    async with plain_task_group() as tg:
        for watch in watches:
            tg.start_soon(_feed, watcher, watch, send.clone())
        send.close()
        with receive:
            try:
                yield events
            finally:
                tg.cancel_scope.cancel()
    if events.failure is not None:
        raise events.failure


async def _feed(
    watcher: Watcher, watch: Watch, send: MemoryObjectSendStream[Event | BackendUnavailable]
) -> None:
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        async with send, contextlib.aclosing(list_then_watch(watcher, watch)) as events:
            try:
                async for event in events:
                    await send.send(event)
            except BackendUnavailable as exc:
                await send.send(exc)
