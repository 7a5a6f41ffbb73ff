"""The composition root: builds the adapters from settings, hands them to the core, serves HTTP."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from loguru import logger
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from mis_adapters.clock import MonotonicClock
from mis_adapters.docker_api import DockerEngine
from mis_adapters.docker_container import ContainerOptions
from mis_adapters.jobs_docker import DockerJobBackend
from mis_adapters.jobs_process import ProcessJobBackend
from mis_adapters.k8s_job import JobOptions
from mis_adapters.storage_local import LocalStorage, PayloadLimits
from mis_app.auth import OPEN_PATHS, AuthMiddleware, TokenFile
from mis_app.errors import error_response
from mis_app.inference import BusyShortcut, ErrorResponder, InferenceEndpoint, UploadDeadlines
from mis_app.metrics import Metrics
from mis_app.openapi import openapi
from mis_app.request_id import RequestIdMiddleware
from mis_app.settings import Settings
from mis_core.errors import BackendUnavailable
from mis_core.gate import AdmissionGate
from mis_core.model import JobRequest, Workspace
from mis_core.ports import JobBackend
from mis_core.session import InferenceService

STATIC = Path(__file__).parent / "static"  # the page at /: shipped in the package, no CDN
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def build_service(settings: Settings) -> InferenceService:
    server = settings.server
    storage = LocalStorage(
        server.payload_dir,
        PayloadLimits(
            max_upload_bytes=int(server.max_upload_bytes),
            max_extracted_bytes=int(server.max_extracted_bytes),
            max_entries=server.max_entries,
            max_compression_ratio=server.max_compression_ratio,
        ),
        compression_level=server.output_compression_level,
        compression=server.output_compression,
    )
    return InferenceService(
        map_spec=settings.map.spec(),
        storage=storage,
        jobs=build_job_backend(settings),
        clock=MonotonicClock(),
        gate=AdmissionGate(server.max_concurrent),
    )


def build_job_backend(settings: Settings) -> JobBackend:
    if settings.backend == "kubernetes":
        # imported only when used: the Kubernetes client costs ~50 MB of memory
        from mis_adapters.jobs_kubernetes import KubernetesJobBackend

        return KubernetesJobBackend(
            job_options(settings),
            node_local=settings.kubernetes.payload_volume.node_local,
            delete_wait_seconds=settings.kubernetes.delete_wait_seconds,
        )
    if settings.backend == "docker":
        return docker_backend(settings)
    return ProcessJobBackend(
        settings.map.spec(),
        kill_grace_seconds=settings.process.kill_grace_seconds,
        payload_root=settings.server.payload_dir,
    )


def docker_backend(settings: Settings) -> DockerJobBackend:
    docker = settings.docker
    options = ContainerOptions(
        instance=docker.instance,
        payload_host_dir=docker.payload_host_dir,
        user=docker.user,
        network=docker.network,
        cap_drop=tuple(docker.cap_drop),
        gpu_driver=docker.gpu_driver,
        shm_size=docker.shm_size,
    )
    return DockerJobBackend(
        DockerEngine(docker.url),
        settings.map.image,
        options,
        pull=docker.pull,
        kill_grace_seconds=docker.stop_grace_seconds,
    )


def job_options(settings: Settings) -> JobOptions:
    """The `kubernetes` section as the Job builder takes it; the node comes from NODE_NAME."""
    k8s = settings.kubernetes
    return JobOptions(
        namespace=k8s.namespace,
        payload_root=str(settings.server.payload_dir),
        claim_name=k8s.payload_volume.claim_name,
        host_path=k8s.payload_volume.host_path,
        node_name=k8s.node_name or os.environ.get("NODE_NAME", ""),
        instance=k8s.instance,
        image_pull_policy=k8s.image_pull_policy,
        image_pull_secrets=tuple(k8s.image_pull_secrets),
        service_account_name=k8s.service_account_name,
        node_selector=k8s.node_selector,
        tolerations=tuple(k8s.tolerations),
        affinity=k8s.affinity,
        runtime_class_name=k8s.runtime_class_name,
        priority_class_name=k8s.priority_class_name,
        extra_volumes=tuple(k8s.extra_volumes),
        extra_volume_mounts=tuple(k8s.extra_volume_mounts),
        security_context=k8s.security_context,
        pod_security_context=k8s.pod_security_context,
        deadline_margin_seconds=k8s.deadline_margin_seconds,
        ttl_seconds_after_finished=k8s.ttl_seconds_after_finished,
    )


def sample_job_request(settings: Settings, request_id: str = "sample-request") -> JobRequest:
    """A request as MIS would make it, for warm-up and for `mis kubernetes render-job`."""
    root = settings.server.payload_dir / request_id
    workspace = Workspace(request_id, str(root), str(root / "input"), str(root / "output"))
    return JobRequest(request_id=request_id, map=settings.map.spec(), workspace=workspace)


def create_app(settings: Settings) -> Starlette:
    service = build_service(settings)
    metrics = Metrics(
        in_flight=lambda: len(service.in_flight),
        cleanup_failures=lambda: service.cleanup_failures,
    )
    server = settings.server
    inference = ErrorResponder(
        InferenceEndpoint(
            service,
            metrics,
            UploadDeadlines(server.upload_idle_timeout_seconds, server.upload_timeout_seconds),
        )
    )
    inference_paths = frozenset({"/v1/inference", "/upload/"})
    description = openapi(server.auth.protect_metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        _log_configuration(settings)
        await service.start()
        async with anyio.create_task_group() as background:
            warm_up = getattr(service.jobs, "warm_up", None)  # container backends have one
            if warm_up is not None and (
                settings.backend == "docker" or settings.kubernetes.warm_up
            ):
                background.start_soon(warm_up, sample_job_request(settings, "warm-up"))
            yield
            background.cancel_scope.cancel()
        await service.jobs.close()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await service.jobs.check()
        except BackendUnavailable as error:
            return error_response(error, request.state.request_id)
        return JSONResponse({"status": "ready"})

    map_summary = _map_summary(settings)

    async def status(request: Request) -> Response:
        now = service.clock.now()
        return JSONResponse(
            {
                "state": "busy" if service.gate.full else "idle",
                "in_flight": len(service.in_flight),
                "capacity": service.gate.capacity,
                "running": [
                    {"elapsed_seconds": round(now - t, 3)} for t in service.in_flight.values()
                ],
                "timeout_seconds": service.map_spec.timeout_seconds,
                "map": map_summary,
            }
        )

    async def metrics_text(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(description)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = {"code": code, "message": exc.detail, "request_id": request.state.request_id}
        return JSONResponse({"error": body}, status_code=exc.status_code, headers=exc.headers)

    app = MisApp(
        outer_middleware=[
            Middleware(RequestIdMiddleware),
            *_auth(settings),
            Middleware(BusyShortcut, service=service, metrics=metrics, paths=inference_paths),
        ],
        routes=[
            *(Route(path, inference, methods=["POST"]) for path in sorted(inference_paths)),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/v1/status", status),
            Route("/metrics", metrics_text),
            Route("/openapi.json", openapi_json),
            Route("/", page),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.service = service
    return app


class MisApp(Starlette):
    """Starlette with `outer_middleware` around its whole stack, error handling included.

    The request id, authentication and the busy shortcut come first, so refusing one of a
    burst of requests costs as little as it can.
    """

    def __init__(self, *, outer_middleware: list[Middleware], **kwargs: Any) -> None:
        self.outer_middleware = outer_middleware
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        for middleware in reversed(self.outer_middleware):
            app = middleware.cls(app, *middleware.args, **middleware.kwargs)
        return app


def _map_summary(settings: Settings) -> dict[str, object]:
    """The configured MAP as /v1/status shows it: no environment values (they may be secrets)."""
    spec = settings.map.spec()
    return {
        "backend": settings.backend,
        "image": spec.image,
        "command": [*spec.command, *spec.args],
        "input_path": spec.input_path,
        "output_path": spec.output_path,
        "resources": {
            "cpu": spec.resources.cpu,
            "memory": spec.resources.memory,
            "gpu": spec.resources.gpu,
        },
        "timeout_seconds": spec.timeout_seconds,
    }


def _auth(settings: Settings) -> list[Middleware]:
    auth = settings.server.auth
    if auth.tokens_file is None:
        return []
    page = {"/", *(f"/static/{file.name}" for file in STATIC.iterdir())}  # the token is asked there
    open_paths = OPEN_PATHS | {"/openapi.json"} | page
    if not auth.protect_metrics:
        open_paths |= {"/metrics"}
    return [Middleware(AuthMiddleware, tokens=TokenFile(auth.tokens_file), open_paths=open_paths)]


def _log_configuration(settings: Settings) -> None:
    spec = settings.map
    logger.info(
        "serving MAP with the {} backend: image={!r} command={} args={} env keys={} "
        "cpu={} memory={} gpu={} timeout={:g}s input_path={} output_path={}",
        settings.backend,
        spec.image,
        spec.command,
        spec.args,
        sorted(spec.env),  # values may be secrets
        spec.resources.cpu,
        spec.resources.memory,
        spec.resources.gpu,
        spec.timeout_seconds,
        spec.input_path,
        spec.output_path,
    )
    logger.info(
        "payload_dir={} max_concurrent={} max_upload_bytes={} max_extracted_bytes={}",
        settings.server.payload_dir,
        settings.server.max_concurrent,
        int(settings.server.max_upload_bytes),
        int(settings.server.max_extracted_bytes),
    )
    if settings.backend == "docker":
        docker = settings.docker
        logger.info(
            "container engine {} (instance {}, pull {}, network {})",
            docker.url,
            docker.instance,
            docker.pull,
            docker.network,
        )
