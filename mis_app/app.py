"""The composition root: builds the adapters from settings, hands them to the core, serves HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from loguru import logger
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mis_adapters.clock import MonotonicClock
from mis_adapters.jobs_process import ProcessJobBackend
from mis_adapters.storage_local import LocalStorage, PayloadLimits
from mis_app.errors import error_response
from mis_app.inference import InferenceEndpoint
from mis_app.request_id import RequestIdMiddleware
from mis_app.settings import Settings, SettingsError
from mis_core.errors import BackendUnavailable
from mis_core.gate import AdmissionGate
from mis_core.ports import JobBackend
from mis_core.session import InferenceService


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
    )
    return InferenceService(
        map_spec=settings.map.spec(),
        storage=storage,
        jobs=build_job_backend(settings),
        clock=MonotonicClock(),
        gate=AdmissionGate(server.max_concurrent),
    )


def build_job_backend(settings: Settings) -> JobBackend:
    if settings.backend == "process":
        return ProcessJobBackend(
            settings.map.spec(), kill_grace_seconds=settings.process.kill_grace_seconds
        )
    raise SettingsError(
        f"backend: {settings.backend!r} is not available in this version; use 'process'"
    )


def create_app(settings: Settings) -> Starlette:
    service = build_service(settings)
    inference = InferenceEndpoint(service)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        _log_configuration(settings)
        await service.start()
        yield

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        try:
            await service.jobs.check()
        except BackendUnavailable as error:
            return error_response(error, request.state.request_id)
        return JSONResponse({"status": "ready"})

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
            }
        )

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        body = {"code": code, "message": exc.detail, "request_id": request.state.request_id}
        return JSONResponse({"error": body}, status_code=exc.status_code, headers=exc.headers)

    app = Starlette(
        routes=[
            Route("/v1/inference", inference, methods=["POST"]),
            Route("/upload/", inference, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/v1/status", status),
        ],
        middleware=[Middleware(RequestIdMiddleware)],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
    app.state.service = service
    return app


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
