"""The few Docker Engine API calls MIS makes, over httpx, with objects as plain dicts.

Works with Docker and with Podman's Docker-compatible service. Paths carry no API version,
so the engine answers in its own current version (newer Docker engines refuse old ones).
"""

from __future__ import annotations

import io
import json
import struct
import tarfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from mis_core.errors import BackendUnavailable

CALL_TIMEOUT = httpx.Timeout(30.0)
STREAM_TIMEOUT = httpx.Timeout(30.0, read=None)  # waits, logs and pulls last as long as they last
_FRAME_HEADER = struct.Struct(">BxxxL")  # stream type, three zero bytes, payload size


class EngineError(Exception):
    """The engine answered, but not with success."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ContainerEngine(Protocol):
    """What the docker backend asks of a container engine; `DockerEngine` speaks it over HTTP."""

    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def image(self, name: str) -> dict[str, Any] | None: ...
    async def pull(self, name: str) -> None: ...
    async def create_container(self, name: str, body: dict[str, Any]) -> str: ...
    async def start(self, container: str) -> None: ...
    async def wait(self, container: str) -> int: ...
    async def inspect(self, container: str) -> dict[str, Any]: ...
    async def stop(self, container: str, grace_seconds: float) -> None: ...
    async def remove(self, container: str) -> None: ...
    async def containers(self, labels: dict[str, str]) -> list[dict[str, Any]]: ...
    def follow_log(self, container: str) -> AsyncIterator[bytes]: ...


def transport_for(url: str) -> tuple[httpx.AsyncHTTPTransport, str]:
    """`unix:///run/docker.sock`, `tcp://host:2375` or `http(s)://host:port` → transport, base."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return httpx.AsyncHTTPTransport(uds=parts.path), "http://engine"
    if parts.scheme == "tcp":
        return httpx.AsyncHTTPTransport(), f"http://{parts.netloc}"
    if parts.scheme in ("http", "https"):
        return httpx.AsyncHTTPTransport(), url.rstrip("/")
    raise ValueError(f"{url!r}: use unix:///path/to/socket, tcp://host:port or http(s)://host:port")


class DockerEngine:
    def __init__(self, url: str) -> None:
        self.url = url
        transport, base = transport_for(url)
        self._http = httpx.AsyncClient(transport=transport, base_url=base, timeout=CALL_TIMEOUT)

    async def close(self) -> None:
        await self._http.aclose()

    async def ping(self) -> None:
        await self._call("GET", "/_ping", limits=httpx.Timeout(5.0))

    async def image(self, name: str) -> dict[str, Any] | None:
        """The image's inspection, or None when the engine does not have it."""
        try:
            return dict((await self._call("GET", f"/images/{name}/json")).json())
        except EngineError as exc:
            if exc.status == 404:
                return None
            raise

    async def pull(self, name: str) -> None:
        """Pull an image; the engine reports failure inside the progress stream, not the status."""
        if "@" in name:  # a digest names one image exactly
            params = {"fromImage": name}
        else:
            image, _, tag = name.rpartition(":") if _has_tag(name) else (name, "", "latest")
            params = {"fromImage": image, "tag": tag}
        async with self._stream("POST", "/images/create", params=params) as response:
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                progress = json.loads(line)
                if progress.get("error"):
                    raise EngineError(500, str(progress["error"]))

    async def create_container(self, name: str, body: dict[str, Any]) -> str:
        response = await self._call("POST", "/containers/create", params={"name": name}, json=body)
        return str(response.json()["Id"])

    async def start(self, container: str) -> None:
        await self._call("POST", f"/containers/{container}/start")

    async def wait(self, container: str) -> int:
        """Block until the container exits; return its exit status."""
        response = await self._call("POST", f"/containers/{container}/wait", limits=STREAM_TIMEOUT)
        return int(response.json().get("StatusCode", -1))

    async def inspect(self, container: str) -> dict[str, Any]:
        return dict((await self._call("GET", f"/containers/{container}/json")).json())

    async def stop(self, container: str, grace_seconds: float) -> None:
        """SIGTERM, then SIGKILL after the grace period. A container not running is fine."""
        seconds = max(0, round(grace_seconds))
        try:
            await self._call(
                "POST",
                f"/containers/{container}/stop",
                params={"t": seconds},
                limits=httpx.Timeout(seconds + 30.0),
            )
        except EngineError as exc:
            if exc.status != 304:  # 304: it had already stopped
                raise

    async def remove(self, container: str) -> None:
        """Remove a container, killing it first if it runs. One already gone is fine."""
        try:
            await self._call("DELETE", f"/containers/{container}", params={"force": 1, "v": 1})
        except EngineError as exc:
            if exc.status != 404:
                raise

    async def containers(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        """Containers in any state that carry all of `labels`."""
        filters = json.dumps({"label": [f"{key}={value}" for key, value in labels.items()]})
        response = await self._call(
            "GET", "/containers/json", params={"all": 1, "filters": filters}
        )
        return list(response.json())

    async def follow_log(self, container: str) -> AsyncIterator[bytes]:
        """The container's output from its start on, as raw bytes, until it exits."""
        params = {"follow": 1, "stdout": 1, "stderr": 1}
        async with self._stream("GET", f"/containers/{container}/logs", params=params) as response:
            multiplexed: bool | None = (
                "multiplexed" in response.headers.get("content-type", "") or None
            )
            pending = b""
            async for data in response.aiter_bytes():
                if multiplexed is None:  # older engines say nothing: a frame header tells
                    multiplexed = len(data) >= 8 and data[0] in (0, 1, 2) and data[1:4] == b"\0\0\0"
                if not multiplexed:
                    yield data
                    continue
                pending += data
                while len(pending) >= _FRAME_HEADER.size:
                    _, size = _FRAME_HEADER.unpack_from(pending)
                    if len(pending) < _FRAME_HEADER.size + size:
                        break
                    yield pending[_FRAME_HEADER.size : _FRAME_HEADER.size + size]
                    pending = pending[_FRAME_HEADER.size + size :]

    async def read_file(self, container: str, path: str, limit: int = 1 << 20) -> bytes | None:
        """A small file from a (created, not necessarily started) container; None if absent.

        The engine sends it as a tar archive, read here up to `limit` and a little for headers.
        """
        data = bytearray()
        try:
            async with self._stream(
                "GET", f"/containers/{container}/archive", params={"path": path}
            ) as response:
                async for chunk in response.aiter_bytes():
                    data += chunk
                    if len(data) > limit + 10_240:
                        raise EngineError(413, f"{path} is larger than {limit} bytes")
        except EngineError as exc:
            if exc.status == 404:
                return None
            raise
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            for member in archive:
                if member.isfile():
                    extracted = archive.extractfile(member)
                    return extracted.read(limit) if extracted else None
        return None

    async def _call(
        self, method: str, path: str, *, limits: httpx.Timeout = CALL_TIMEOUT, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, path, timeout=limits, **kwargs)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from exc
        _raise_for_status(response)
        return response

    @asynccontextmanager
    async def _stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        """An open streaming response whose status has been checked."""
        request = self._http.build_request(method, path, timeout=STREAM_TIMEOUT, **kwargs)
        try:
            response = await self._http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise self.unreachable(exc) from exc
        try:
            if not response.is_success:
                await response.aread()
                _raise_for_status(response)
            yield response
        finally:
            await response.aclose()

    def unreachable(self, exc: BaseException) -> BackendUnavailable:
        return BackendUnavailable(
            f"The container engine at {self.url} cannot be reached ({type(exc).__name__}: "
            f"{exc}). Check that Docker, or Podman's service (`podman system service`), is "
            "running and that docker.url points at it."
        )


def _raise_for_status(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        message = str(response.json().get("message", ""))
    except (ValueError, AttributeError):
        message = response.text.strip()
    raise EngineError(response.status_code, message or response.reason_phrase)


def _has_tag(name: str) -> bool:
    """`host:5000/app` has no tag; `app:1` and `host:5000/app:1` do."""
    return ":" in name.rsplit("/", 1)[-1]
