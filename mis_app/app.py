"""The HTTP edge: routes and middleware around the service that `mis_app.bootstrap` builds."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from mis_app.auth import OPEN_PATHS, AuthMiddleware, TokenFile
from mis_app.bootstrap import build_service, log_configuration, map_summary, sample_job_request
from mis_app.errors import error_response
from mis_app.inference import BusyShortcut, ErrorResponder, InferenceEndpoint, UploadDeadlines
from mis_app.metrics import Metrics
from mis_app.openapi import openapi
from mis_app.request_id import RequestIdMiddleware
from mis_app.settings import Settings
from mis_core.errors import BackendUnavailable

STATIC = Path(__file__).parent / "static"  # the page at /: shipped in the package, no CDN
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


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
        log_configuration(settings)
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

    summary = map_summary(settings)

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
                "map": summary,
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


def _auth(settings: Settings) -> list[Middleware]:
    auth = settings.server.auth
    if auth.tokens_file is None:
        return []
    page = {"/", *(f"/static/{file.name}" for file in STATIC.iterdir())}  # the token is asked there
    open_paths = OPEN_PATHS | {"/openapi.json"} | page
    if not auth.protect_metrics:
        open_paths |= {"/metrics"}
    return [Middleware(AuthMiddleware, tokens=TokenFile(auth.tokens_file), open_paths=open_paths)]
