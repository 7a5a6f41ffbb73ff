"""The few Kubernetes API calls MIS makes, on kubernetes-asyncio, with objects as plain dicts.

Responses are read raw (`_preload_content=False`) so list results, watch events and the
manifests MIS builds are all the API's own JSON, and the status code is checked here.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import attrs
from kubernetes_asyncio import client, config
from kubernetes_asyncio.config.config_exception import ConfigException

from mis_adapters.kubernetes.errors import NotFound, api_error, unreachable
from mis_core.errors import BackendUnavailable

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
WATCH_SECONDS = 60  # the server ends each watch after this; it is then resumed
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10)


@attrs.frozen
class LogLimits:
    """How much of a log to read at once: its last `lines`, at most `size` bytes."""

    lines: int
    size: int


async def connect(namespace: str) -> tuple[client.ApiClient, str]:
    """An API client: the pod's service account inside a cluster, else the kubeconfig.

    The namespace is `namespace` when set, else the pod's own, else the kubeconfig context's.
    """
    configuration = client.Configuration()
    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            if not namespace and SERVICE_ACCOUNT_NAMESPACE.exists():
                namespace = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        else:
            kubeconfig = os.environ.get("KUBECONFIG") or None
            await config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration
            )
            if not namespace:
                _, active = config.list_kube_config_contexts(kubeconfig)
                namespace = ((active or {}).get("context") or {}).get("namespace", "")
    except (ConfigException, OSError) as exc:
        raise BackendUnavailable(
            f"No Kubernetes connection is configured ({exc}). Run MIS in a pod, or point "
            "KUBECONFIG at a kubeconfig file."
        ) from None
    return client.ApiClient(configuration), namespace or "default"


class KubeApi:
    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)

    async def close(self) -> None:
        await self.api_client.close()

    async def version(self) -> Any:
        return await self._json(client.VersionApi(self.api_client).get_code, seconds=5)

    async def create_job(self, manifest: dict[str, Any]) -> Any:
        return await self._json(self.batch.create_namespaced_job, self.namespace, manifest)

    async def delete_job(self, name: str, propagation: str) -> None:
        """Delete a Job and, through `propagation`, its pods. A Job already gone is fine."""
        with suppress(NotFound):
            await self._json(
                self.batch.delete_namespaced_job,
                name,
                self.namespace,
                propagation_policy=propagation,
            )

    async def list_objects(self, kind: str, **selectors: Any) -> Any:
        return await self._json(self._lister(kind), self.namespace, **selectors)

    async def read_claim(self, name: str) -> Any:
        return await self._json(
            self.core.read_namespaced_persistent_volume_claim, name, self.namespace
        )

    async def watch(
        self, kind: str, resource_version: str, **selectors: Any
    ) -> AsyncGenerator[dict[str, Any]]:
        """Events from `resource_version` on until the server ends the stream.

        An ERROR event is raised as the API error it carries (`Gone` when the version is too
        old: list again).
        """
        response = await self._open(
            self._lister(kind),
            self.namespace,
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_SECONDS,
            **selectors,
        )
        with _streaming(response):
            async for line in response.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise api_error(
                        int(status.get("code", 500)),
                        status.get("reason", ""),
                        status.get("message", ""),
                    )
                yield event

    async def read_log(
        self, pod: str, container: str, *, follow: bool = False, limits: LogLimits | None = None
    ) -> AsyncGenerator[bytes]:
        """The container's log as it comes, in chunks (lines are cut by the MAP-log follower).

        `limits` bound a log read after the fact.
        """
        bounds: dict[str, Any] = {}
        if limits is not None:
            bounds = {"tail_lines": limits.lines, "limit_bytes": limits.size}
        response = await self._open(
            self.core.read_namespaced_pod_log,
            pod,
            self.namespace,
            container=container,
            follow=follow,
            **bounds,
        )
        with _streaming(response):
            async for chunk in response.content.iter_any():
                yield chunk

    def _lister(self, kind: str) -> Any:
        return {"jobs": self.batch.list_namespaced_job, "pods": self.core.list_namespaced_pod}[kind]

    async def _json(self, method: Any, *args: Any, seconds: float = 30, **kwargs: Any) -> Any:
        response = await self._open(
            method, *args, request_timeout=aiohttp.ClientTimeout(total=seconds), **kwargs
        )
        try:
            return await response.json(content_type=None)
        finally:
            response.release()

    async def _open(
        self,
        method: Any,
        *args: Any,
        request_timeout: aiohttp.ClientTimeout = STREAM_TIMEOUT,
        **kwargs: Any,
    ) -> aiohttp.ClientResponse:
        """Send the request; return the response once its status says success."""
        try:
            response: aiohttp.ClientResponse = await method(
                *args, _preload_content=False, _request_timeout=request_timeout, **kwargs
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise unreachable(exc) from None
        if not 200 <= response.status < 300:
            try:
                body = await response.json(content_type=None)
            except (ValueError, aiohttp.ClientError):
                body = {}
            response.release()
            raise api_error(
                response.status,
                str(body.get("reason") or response.reason),
                str(body.get("message", "")),
            )
        return response


@contextmanager
def _streaming(response: aiohttp.ClientResponse) -> Iterator[None]:
    """While a body streams: a connection lost midway is `unreachable`, like one refused."""
    try:
        yield
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        raise unreachable(exc) from None
    finally:
        response.release()
