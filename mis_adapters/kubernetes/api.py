"""The few Kubernetes API calls MIS makes, on kubernetes-asyncio, with objects as plain dicts.

Responses are read raw (`_preload_content=False`) so list results, watch events and the
manifests MIS builds are all the API's own JSON, and the status code is checked in `wire.py`.
Every call is tried again where that is safe (`retry.py`), but for a watch's opening, which the
watch's own loop repeats (`watch.py`); creating a Job stays idempotent.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import suppress
from typing import Any

import aiohttp
import attrs
from kubernetes_asyncio import client

from mis_adapters.kubernetes.credentials import Connection, Reauthentication
from mis_adapters.kubernetes.errors import Conflict, KubeApiError, NotFound, unreachable
from mis_adapters.kubernetes.ownership import same_identity
from mis_adapters.kubernetes.retry import ApiHealth, Attempts, Failure, RetryPolicy
from mis_adapters.kubernetes.wire import (
    UNANSWERED,
    Retryable,
    event_error,
    reason_of,
    streaming,
    try_once,
)

WATCH_SECONDS = 60  # the server ends each watch after this; it is then resumed
CALL_SECONDS = 30  # one try of a call that is not a stream


@attrs.frozen
class LogLimits:
    """How much of a log to read at once: its last `lines`, at most `size` bytes."""

    lines: int
    size: int


class KubeApi:
    def __init__(
        self,
        connection: Connection,
        policy: RetryPolicy,
        health: ApiHealth | None = None,
    ) -> None:
        self.api_client = connection.api_client
        self.namespace = connection.namespace
        self.credentials = connection.credentials
        self.policy = policy
        self.health = health or ApiHealth()
        self.batch = client.BatchV1Api(self.api_client)
        self.core = client.CoreV1Api(self.api_client)

    async def close(self) -> None:
        await self.api_client.close()

    async def version(self, budget: float | None = None) -> Any:
        """The server's version; `budget`: how long to retry (0: report the first failure)."""
        get_code = client.VersionApi(self.api_client).get_code
        return await self._json("version", get_code, seconds=5, budget=budget)

    def attempts(self, verb: str) -> Attempts:
        """The tries of a call, for a caller that needs to know afterwards whether it is unsure."""
        return Attempts(self.policy, self.health, verb)

    async def create_job(self, manifest: dict[str, Any], attempts: Attempts | None = None) -> Any:
        """Create the Job once, however often the call is tried.

        After a try that may have been carried out (a timeout, a 5xx, a connection lost once
        the body was sent), the API's 409 for a Job that carries this request's identity
        labels means the earlier try created it.
        """
        attempts = attempts or self.attempts("create")
        create = self.batch.create_namespaced_job
        try:
            return await self._json("create", create, self.namespace, manifest, attempts=attempts)
        except Conflict:
            if not attempts.ambiguous:
                raise
            name = manifest["metadata"]["name"]  # listed: the Role grants no get on Jobs
            found = await self.list_objects("jobs", field_selector=f"metadata.name={name}")
            existing = next(iter(found.get("items") or []), None)
            if existing is None or not same_identity(existing, manifest):
                raise
            return existing

    async def delete_job(self, name: str, propagation: str, budget: float | None = None) -> bool:
        """Delete a Job and, through `propagation`, its pods: whether it was there to delete."""
        delete, namespace = self.batch.delete_namespaced_job, self.namespace
        with suppress(NotFound):
            await self._json(
                "delete", delete, name, namespace, budget=budget, propagation_policy=propagation
            )
            return True
        return False

    async def list_objects(self, kind: str, **selectors: Any) -> Any:
        return await self._json("list", self._lister(kind), self.namespace, **selectors)

    async def read_claim(self, name: str) -> Any:
        return await self._json(
            "get", self.core.read_namespaced_persistent_volume_claim, name, self.namespace
        )

    async def watch(
        self, kind: str, resource_version: str, **selectors: Any
    ) -> AsyncGenerator[dict[str, Any]]:
        """Events after `resource_version` until the server ends the stream.

        Opened once: the caller's loop (`watch.py`) owns reconnecting and its back-off, so a
        failed open is raised at once (`GaveUp`, with any Retry-After the server asked for).
        A 401, whether it answers the request or comes as an ERROR event, reads the credentials
        again once and opens the stream again from the last version seen, as a call does. Any
        other ERROR event is raised as the API error it carries (`Gone` when the version is too
        old: list again).
        """
        reauthentication = Reauthentication(self.credentials)  # one for the whole stream
        while True:
            response = await self._open(
                "watch",
                self._lister(kind),
                self.namespace,
                attempts=Attempts(self.policy, self.health, "watch", budget=0),
                reauthentication=reauthentication,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=WATCH_SECONDS,
                **selectors,
            )
            with streaming(response):
                async for line in response.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        error = event_error(event)
                        if not await reauthentication.retry(error.code):
                            raise error
                        break
                    resource_version = (
                        event["object"]["metadata"].get("resourceVersion") or resource_version
                    )
                    yield event
                else:
                    return

    async def read_log(
        self,
        pod: str,
        container: str,
        *,
        follow: bool = False,
        limits: LogLimits | None = None,
        budget: float | None = None,
    ) -> AsyncGenerator[bytes]:
        """The container's log as it comes, in chunks (lines are cut by the MAP-log follower);
        `limits` bound a read after the fact, `budget` how long a refused one is retried. Its
        failures are not the API's: the kubelet that serves a log may fail while the API answers.
        """
        bounds: dict[str, Any] = {}
        if limits is not None:
            bounds = {"tail_lines": limits.lines, "limit_bytes": limits.size}
        response = await self._open(
            "log",
            self.core.read_namespaced_pod_log,
            pod,
            self.namespace,
            container=container,
            follow=follow,
            attempts=Attempts(self.policy, ApiHealth(), "log", budget),
            **bounds,
        )
        with streaming(response):
            async for chunk in response.content.iter_any():
                yield chunk

    def _lister(self, kind: str) -> Any:
        return {"jobs": self.batch.list_namespaced_job, "pods": self.core.list_namespaced_pod}[kind]

    async def _json(
        self,
        verb: str,
        method: Any,
        *args: Any,
        seconds: float = CALL_SECONDS,
        attempts: Attempts | None = None,
        budget: float | None = None,
        **kwargs: Any,
    ) -> Any:
        """The answer's JSON; an answer cut short is tried again, like one never sent."""
        attempts = attempts or Attempts(self.policy, self.health, verb, budget)
        timeout = aiohttp.ClientTimeout(total=seconds)
        while True:
            response = await self._open(
                verb, method, *args, attempts=attempts, request_timeout=timeout, **kwargs
            )
            try:
                return await response.json(content_type=None)
            except UNANSWERED as exc:
                cause = f"cut its answer short ({type(exc).__name__}: {exc})"
                failure = Failure(reason_of(exc), cause, ambiguous=True)
                await attempts.again(failure, unreachable(exc))
            finally:
                response.release()

    async def _open(
        self,
        verb: str,
        method: Any,
        *args: Any,
        attempts: Attempts | None = None,
        reauthentication: Reauthentication | None = None,
        **kwargs: Any,
    ) -> aiohttp.ClientResponse:
        """Send the request until it succeeds, fails for good, or its time is spent.

        A 401 reads the credentials again once (a rotated token) before it counts.
        """
        attempts = attempts or Attempts(self.policy, self.health, verb)
        if reauthentication is None:
            reauthentication = Reauthentication(self.credentials)
        while True:
            attempts.pending = True  # a try cancelled before its answer may have been carried out
            try:
                return await try_once(self.health, method, *args, **kwargs)
            except Retryable as retryable:
                attempts.pending = False  # ambiguous, if it was, from here on
                await attempts.again(retryable.failure, retryable.error)
            except KubeApiError as exc:
                attempts.pending = False
                if not await reauthentication.retry(exc.code):
                    raise
