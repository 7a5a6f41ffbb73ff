"""A Kubernetes API test double that speaks the real wire format over real HTTP.

It serves what MIS uses — jobs, pods, pods/log, persistentvolumeclaims, /version — as JSON
(the routes are in `double_api.py`), with list + watch (newline-delimited events,
resourceVersion, bookmarks-free, 410 Gone for a compacted version), 404 and 409 Status
objects, and deletion with propagation. A simulated job controller makes one pod per Job; a
simulated kubelet (a `Behaviour`) moves the pod through its states, writing its log. It runs
uvicorn in a thread on 127.0.0.1 with its own event loop; tests read its state (objects, the
request log) directly, and wait on the request log instead of sleeping.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NamedTuple

import uvicorn

try:
    import uvloop
except ImportError:  # pragma: no cover - Windows
    uvloop = None  # type: ignore[assignment]
import yaml
from starlette.responses import JSONResponse

from tests.harness.wait import wait_until
from tests.k8s.faults import Faults
from tests.k8s.watch_faults import WatchFaults

Behaviour = Callable[["KubeDouble", str, dict[str, Any], str], Coroutine[Any, Any, None]]
GROUPS = {"jobs": "batch", "pods": "", "persistentvolumeclaims": ""}
KINDS = {
    "jobs": ("Job", "batch/v1"),
    "pods": ("Pod", "v1"),
    "persistentvolumeclaims": ("PersistentVolumeClaim", "v1"),
}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def status(code: int, reason: str, message: str) -> JSONResponse:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return JSONResponse(body, status_code=code)


class Call(NamedTuple):
    """One request the double answered, as RBAC would see it."""

    group: str
    resource: str
    verb: str
    namespace: str = ""


def matches(obj: dict[str, Any], label_selector: str, field_selector: str) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for requirement in filter(None, label_selector.split(",")):
        key, _, value = requirement.partition("=")
        if labels.get(key) != value:
            return False
    for requirement in filter(None, field_selector.split(",")):
        key, _, value = requirement.partition("=")
        if key == "metadata.name" and obj["metadata"]["name"] != value:
            return False
    return True


class KubeDouble:
    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.behaviour = behaviour
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []
        self.version = 1000
        self.oldest_watchable = 0
        self.requests: list[Call] = []
        self._requests_changed = threading.Condition()
        self.logs: dict[str, list[str]] = {}
        self.logs_closed: set[str] = set()
        self.kubelets: dict[str, asyncio.Task[None]] = {}
        self.drops = 0
        self.forbidden: set[tuple[str, str]] = set()  # (resource, verb) answered 403, as RBAC would
        self.pod_deletion_seconds = 0.05
        # A mutating admission step (a cluster policy), applied to every object created
        self.admission: Callable[[str, dict[str, Any]], None] | None = None
        self.streams = WatchFaults()  # silent, cut or refused streams (tests/k8s/watch_faults.py)
        self._pulse: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        # Injected faults (`faults.py`); TLS when `tls` names a certificate and its key
        self.faults = Faults(on_outage=lambda: self._on_loop(self.drop_watches))
        self.tls: tuple[Path, Path] | None = None

    # -- running ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> KubeDouble:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        from tests.k8s.double_api import api_app

        app = self.faults.wrap(api_app(self))
        certificate, key = self.tls or (None, None)
        config = uvicorn.Config(
            app, log_level="warning", lifespan="off", ssl_certfile=certificate, ssl_keyfile=key
        )
        self._server = server = uvicorn.Server(config)
        ready = threading.Event()

        def serve() -> None:
            # uvloop when there is one: the default loop, run in a thread beside a client in
            # the same process, stalls kept-alive connections for ~40 ms per request here
            self._loop = uvloop.new_event_loop() if uvloop else asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._pulse = asyncio.Event()
            self._loop.call_soon(ready.set)
            assert self._server is not None
            self._loop.run_until_complete(self._server.serve(sockets=[sock]))
            leftover = asyncio.all_tasks(self._loop)  # kubelets, pods still terminating
            for task in leftover:
                task.cancel()
            self._loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        ready.wait(10)
        wait_until(lambda: server.started, 10, "the API double to listen")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def kubeconfig(self, path: Path, namespace: str = "mis-test") -> Path:
        path.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "double", "cluster": {"server": self.url}}],
                    "users": [{"name": "mis", "user": {"token": "test-token"}}],
                    "contexts": [
                        {
                            "name": "double",
                            "context": {"cluster": "double", "user": "mis", "namespace": namespace},
                        }
                    ],
                    "current-context": "double",
                }
            )
        )
        return path

    def _on_loop(self, function: Callable[[], None]) -> None:
        """Run `function` soon on the double's loop, from any thread, without waiting."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(function)

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run `function` on the double's loop (state changes must happen there)."""
        assert self._loop is not None

        async def run() -> Any:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    # -- state --------------------------------------------------------------------------
    def items(self, resource: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(o)
            for (r, ns, _), o in list(self.objects.items())
            if r == resource and namespace in (None, ns)
        ]

    def verbs(self) -> set[tuple[str, str, str]]:
        return {(call.group, call.resource, call.verb) for call in self.requests}

    def record(self, call: Call) -> None:
        """Log a request (on the double's loop) and wake whoever waits for one."""
        with self._requests_changed:
            self.requests.append(call)
            self._requests_changed.notify_all()
        self._notify()

    def count(self, group: str, resource: str, verb: str) -> int:
        return sum(1 for call in list(self.requests) if call[:3] == (group, resource, verb))

    def wait_for_calls(
        self, group: str, resource: str, verb: str, count: int = 1, timeout: float = 10
    ) -> None:
        """Block (a test's thread) until the double has answered `count` such requests."""
        with self._requests_changed:
            if not self._requests_changed.wait_for(
                lambda: self.count(group, resource, verb) >= count, timeout
            ):
                raise AssertionError(
                    f"no {count} {verb} {resource} request(s) within {timeout}s: {self.requests}"
                )

    async def calls_made(self, group: str, resource: str, verb: str, count: int = 1) -> None:
        """Wait (on the double's loop, in a kubelet story) for `count` such requests."""
        while self.count(group, resource, verb) < count:
            await self.changed()

    async def changed(self) -> None:
        """Return at the next change of state, log line or request (on the double's loop)."""
        assert self._pulse is not None
        await self._pulse.wait()

    def put(
        self, resource: str, namespace: str, obj: dict[str, Any], change: str
    ) -> dict[str, Any]:
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        key = (resource, namespace, obj["metadata"]["name"])
        if change == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        self.history.append((self.version, resource, change, copy.deepcopy(obj)))
        self._notify()
        return obj

    def update_status(self, resource: str, namespace: str, name: str, **status: Any) -> None:
        obj = self.objects.get((resource, namespace, name))
        if obj is None:
            return
        obj.setdefault("status", {}).update(copy.deepcopy(status))
        self.put(resource, namespace, obj, "MODIFIED")

    def log(self, pod: str, line: str) -> None:
        self.logs.setdefault(pod, []).append(line)
        self._notify()

    def close_log(self, pod: str) -> None:
        self.logs_closed.add(pod)
        self._notify()

    def compact(self) -> None:
        """Forget history: a watch from any version seen so far now gets 410 Gone."""
        self.version += 1  # as other objects' changes would move it on
        self.oldest_watchable = self.version

    def drop_watches(self) -> None:
        """End every open watch stream, as a restarting API server or a proxy would."""
        self.drops += 1
        self._notify()

    def _notify(self) -> None:
        assert self._pulse is not None
        self._pulse.set()
        self._pulse = asyncio.Event()

    # -- the simulated controllers ------------------------------------------------------
    def create_pod_for(self, namespace: str, job: dict[str, Any]) -> None:
        template = job["spec"]["template"]
        name = f"{job['metadata']['name']}-{secrets.token_hex(3)[:5]}"
        labels = {
            **(template["metadata"].get("labels") or {}),
            "job-name": job["metadata"]["name"],
            "batch.kubernetes.io/job-name": job["metadata"]["name"],
            "controller-uid": job["metadata"]["uid"],
        }
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": str(uuid.uuid4()),
                "labels": labels,
                "creationTimestamp": now(),
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": job["metadata"]["name"],
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": {"phase": "Pending", "conditions": []},
        }
        self.put("pods", namespace, pod, "ADDED")
        if self.behaviour is not None:
            self.kubelets[name] = asyncio.get_running_loop().create_task(
                self.behaviour(self, namespace, job, name)
            )

    async def delete_pod(self, namespace: str, name: str) -> None:
        pod = self.objects.get(("pods", namespace, name))
        if pod is None:
            return
        pod["metadata"]["deletionTimestamp"] = now()
        self.put("pods", namespace, pod, "MODIFIED")
        task = self.kubelets.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.sleep(self.pod_deletion_seconds)
        self.close_log(name)
        if ("pods", namespace, name) in self.objects:
            self.put("pods", namespace, self.objects[("pods", namespace, name)], "DELETED")
