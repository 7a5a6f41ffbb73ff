"""Following Jobs and pods: list, then watch from the list's version, for as long as asked.

One async generator does it for every follower (the Job's outcome, its pod going away, the
warm-up pull): a dropped stream is resumed from the last version seen, a version the server
has compacted away (410 Gone) means listing again, and each listing ends with a `Listed`
marker naming what it held, so a follower can tell "nothing there" from "not listed yet".
`watching` merges several such streams into one, in the order events arrive.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from loguru import logger

from mis_adapters.kubernetes.api import KubeApi
from mis_adapters.kubernetes.errors import Gone, KubeApiError
from mis_core.errors import BackendUnavailable

Kind = Literal["jobs", "pods"]
RETRY_SECONDS = (0.1, 0.2, 0.5, 1.0, 2.0)  # after a dropped connection, then every 2 s


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


async def list_then_watch(api: KubeApi, watch: Watch) -> AsyncGenerator[Event]:
    """Events for `watch`, forever. A refusal other than 410 is `BackendUnavailable`."""
    version = ""
    failures = 0
    while True:
        try:
            if not version:
                listing = await api.list_objects(watch.kind, **watch.selectors)
                version = listing["metadata"]["resourceVersion"]
                items = listing.get("items") or []
                for obj in items:
                    yield Change(watch.kind, "ADDED", obj)
                yield Listed(watch.kind, frozenset(obj["metadata"]["name"] for obj in items))
            stream = api.watch(watch.kind, version, **watch.selectors)
            async with contextlib.aclosing(stream) as events:
                async for event in events:
                    obj = event["object"]
                    version = obj["metadata"].get("resourceVersion") or version
                    if event["type"] != "BOOKMARK":
                        yield Change(watch.kind, event["type"], obj)
            failures = 0
        except Gone:
            logger.debug("the {} watch expired; listing again", watch.kind)
            version = ""
        except KubeApiError as exc:
            raise BackendUnavailable(f"Watching {watch.kind} failed: {exc}") from None
        except BackendUnavailable as exc:
            delay = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
            failures += 1
            logger.warning(
                "the {} watch was cut ({}); retrying in {}s", watch.kind, exc.message, delay
            )
            await anyio.sleep(delay)


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
async def watching(api: KubeApi, *watches: Watch) -> AsyncIterator[_Events]:
    """The events of every watch in `watches`, merged, while the block runs.

    Failures (a watch refused, the block's own errors) are raised after the watches stopped,
    never from inside a task group, so callers catch them as they are.
    """
    send, receive = anyio.create_memory_object_stream[Event | BackendUnavailable](math.inf)
    events = _Events(receive)
    body_error: Exception | None = None
    async with anyio.create_task_group() as tg:
        for watch in watches:
            tg.start_soon(_feed, api, watch, send.clone())
        send.close()
        with receive:
            try:
                yield events
            except Exception as exc:  # cancellation still goes through the group
                body_error = exc
        tg.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
    if events.failure is not None:
        raise events.failure


async def _feed(
    api: KubeApi, watch: Watch, send: MemoryObjectSendStream[Event | BackendUnavailable]
) -> None:
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
        async with send, contextlib.aclosing(list_then_watch(api, watch)) as events:
            try:
                async for event in events:
                    await send.send(event)
            except BackendUnavailable as exc:
                await send.send(exc)
