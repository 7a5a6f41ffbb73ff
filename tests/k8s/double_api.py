"""The HTTP side of the API double: the routes MIS calls, answered from the double's state."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.k8s.double import GROUPS, KINDS, Call, matches, now, status

if TYPE_CHECKING:
    from tests.k8s.double import KubeDouble


def api_app(double: KubeDouble) -> Starlette:
    return _Api(double).app()


class _Api:
    def __init__(self, double: KubeDouble) -> None:
        self.double = double

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/version", self._version),
                Route("/version/", self._version),
                Route(
                    "/apis/batch/v1/namespaces/{ns}/jobs",
                    self._collection("jobs"),
                    methods=["GET", "POST"],
                ),
                Route(
                    "/apis/batch/v1/namespaces/{ns}/jobs/{name}",
                    self._member("jobs"),
                    methods=["GET", "DELETE"],
                ),
                Route("/api/v1/namespaces/{ns}/pods", self._collection("pods"), methods=["GET"]),
                Route(
                    "/api/v1/namespaces/{ns}/pods/{name}",
                    self._member("pods"),
                    methods=["GET", "DELETE"],
                ),
                Route("/api/v1/namespaces/{ns}/pods/{name}/log", self._log),
                Route(
                    "/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}",
                    self._member("persistentvolumeclaims"),
                ),
            ]
        )

    async def _version(self, request: Request) -> Response:
        return JSONResponse(
            {"major": "1", "minor": "34", "gitVersion": "v1.34.0", "platform": "linux/amd64"}
        )

    def _collection(self, resource: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            ns = request.path_params["ns"]
            group = GROUPS[resource]
            if request.method == "POST":
                self.double.record(Call(group, resource, "create", ns))
                if (resource, "create") in self.double.forbidden:
                    return status(
                        403, "Forbidden", f'cannot create resource "{resource}" in namespace "{ns}"'
                    )
                return await self._create(resource, ns, await request.json())
            params = request.query_params
            labels, fields = params.get("labelSelector", ""), params.get("fieldSelector", "")
            if params.get("watch", "").lower() in ("true", "1"):
                self.double.record(Call(group, resource, "watch", ns))
                if (resource, "watch") in self.double.forbidden:
                    return status(403, "Forbidden", f'cannot watch resource "{resource}"')
                if (refusal := self.double.watch_faults.refusal(resource)) is not None:
                    return refusal
                return StreamingResponse(
                    self._faulty_watch(
                        resource,
                        ns,
                        labels,
                        fields,
                        params.get("resourceVersion", ""),
                        float(params.get("timeoutSeconds", "300")),
                    ),
                    media_type="application/json",
                )
            self.double.record(Call(group, resource, "list", ns))
            kind, api_version = KINDS[resource]
            items = [o for o in self.double.items(resource, ns) if matches(o, labels, fields)]
            return JSONResponse(
                {
                    "kind": f"{kind}List",
                    "apiVersion": api_version,
                    "metadata": {"resourceVersion": str(self.double.version)},
                    "items": items,
                }
            )

        return handle

    def _member(self, resource: str) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            ns, name = request.path_params["ns"], request.path_params["name"]
            group = GROUPS[resource]
            obj = self.double.objects.get((resource, ns, name))
            verb = "delete" if request.method == "DELETE" else "get"
            self.double.record(Call(group, resource, verb, ns))
            if obj is None:
                return status(404, "NotFound", f'{resource} "{name}" not found')
            if verb == "get":
                return JSONResponse(obj)
            body = json.loads(await request.body() or b"{}")
            policy = (
                request.query_params.get("propagationPolicy")
                or body.get("propagationPolicy")
                or "Background"
            )
            self.double.put(resource, ns, obj, "DELETED")
            if resource == "jobs" and policy != "Orphan":
                for pod in self.double.items("pods", ns):
                    if pod["metadata"]["labels"].get("controller-uid") == obj["metadata"]["uid"]:
                        asyncio.get_running_loop().create_task(
                            self.double.delete_pod(ns, pod["metadata"]["name"])
                        )
            elif resource == "pods":
                self.double.objects[(resource, ns, name)] = obj
                asyncio.get_running_loop().create_task(self.double.delete_pod(ns, name))
            return JSONResponse(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Success",
                    "details": {"name": name},
                }
            )

        return handle

    async def _create(self, resource: str, ns: str, body: dict[str, Any]) -> Response:
        name = body.get("metadata", {}).get("name", "")
        if not name:
            return status(422, "Invalid", "metadata.name: Required value")
        if (resource, ns, name) in self.double.objects:
            return status(409, "AlreadyExists", f'{resource} "{name}" already exists')
        obj = copy.deepcopy(body)
        obj["metadata"].update(
            {"namespace": ns, "uid": str(uuid.uuid4()), "creationTimestamp": now()}
        )
        obj["status"] = {}
        if self.double.admission is not None:
            self.double.admission(resource, obj)
        self.double.put(resource, ns, obj, "ADDED")
        if resource == "jobs":
            self.double.create_pod_for(ns, obj)
        return JSONResponse(obj, status_code=201)

    async def _watch(
        self, resource: str, ns: str, labels: str, fields: str, since: str, seconds: float
    ) -> AsyncIterator[bytes]:
        start = int(since) if since else self.double.version
        if start < self.double.oldest_watchable:
            gone = {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Expired",
                "message": f"too old resource version: {start} ({self.double.oldest_watchable})",
                "code": 410,
            }
            yield (json.dumps({"type": "ERROR", "object": gone}) + "\n").encode()
            return
        drops = self.double.drops
        deadline = asyncio.get_running_loop().time() + seconds
        index = next(
            (i for i, event in enumerate(self.double.history) if event[0] > start),
            len(self.double.history),
        )
        while True:
            while index < len(self.double.history):
                _, kind, change, obj = self.double.history[index]
                index += 1
                if (
                    kind == resource
                    and obj["metadata"].get("namespace") == ns
                    and matches(obj, labels, fields)
                ):
                    yield (json.dumps({"type": change, "object": obj}) + "\n").encode()
            remaining = deadline - asyncio.get_running_loop().time()
            if self.double.drops != drops or remaining <= 0:
                return
            try:
                await asyncio.wait_for(self.double.changed(), remaining)
            except TimeoutError:
                return

    async def _log(self, request: Request) -> Response:
        ns, name = request.path_params["ns"], request.path_params["name"]
        self.double.record(Call("", "pods/log", "get", ns))
        if (refusal := self.double.watch_faults.refusal("pods/log")) is not None:
            return refusal
        if ("pods", ns, name) not in self.double.objects and name not in self.double.logs:
            return status(404, "NotFound", f'pods "{name}" not found')
        params = request.query_params
        if params.get("follow", "").lower() not in ("true", "1"):
            lines = self.double.logs.get(name, [])
            tail = int(params["tailLines"]) if "tailLines" in params else len(lines)
            text = "".join(line + "\n" for line in lines[-tail:] if tail)
            if "limitBytes" in params:
                text = text.encode()[: int(params["limitBytes"])].decode(errors="ignore")
            return PlainTextResponse(text)

        async def follow() -> AsyncIterator[bytes]:
            sent = 0
            while True:
                lines = self.double.logs.get(name, [])
                while sent < len(lines):
                    yield (lines[sent] + "\n").encode()
                    sent += 1
                if name in self.double.logs_closed:
                    return
                await self.double.changed()

        return StreamingResponse(
            self.double.watch_faults.stream("pods/log", follow()), media_type="text/plain"
        )

    def _faulty_watch(self, resource: str, *args: Any) -> AsyncIterator[bytes]:
        """The watch as the faults a test switched on let it through (watch_faults.py)."""
        return self.double.watch_faults.stream(resource, self._watch(resource, *args))
