"""The web app on the service, and the whole server: the app and how it takes connections.

The app's lifespan runs the service (its sweep first, its deletions in the background), the
live log, and the backend's warm-up beside them; on the way out it waits for the requests a
stop cancelled, then closes the backend, whatever ended the app.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
from loguru import logger
from starlette.applications import Starlette

from mis_adapters.storage.readiness import prepare_payload_folder
from mis_app import app as routes
from mis_app.bootstrap.adapters import Backend, build_backend, build_service, sample_job_request
from mis_app.bootstrap.connections import listener
from mis_app.bootstrap.manifest import with_map_manifest
from mis_app.bootstrap.options import upload_limits
from mis_app.live_log import LiveLogs
from mis_app.metrics import Metrics
from mis_app.middleware import middleware
from mis_app.openapi import openapi
from mis_app.serve import Listener
from mis_app.settings import Settings
from mis_app.state import AppState, app_state, install
from mis_app.summary import log_configuration, map_summary
from mis_core.model import JobRequest
from mis_core.ports import Clock, Storage, WarmUp
from mis_core.service import InferenceService

# how long a stop waits for the requests it cancelled to stop their MAP and delete their files
CANCELLED_REQUESTS_SECONDS = 60
Lifespan = Callable[[Starlette], AbstractAsyncContextManager[None]]


def build_server(settings: Settings) -> tuple[Starlette, Listener]:
    """The app, and how the server takes its connections: the MAP's settings completed from its
    image's manifest first when `map.from_manifest` asks. Raises SettingsError (the manifest)
    or TlsUnusable (server.tls's files)."""
    settings = with_map_manifest(settings)
    app = create_app(settings)
    return app, listener(settings, app_state(app).metrics)


def create_app(
    settings: Settings,
    *,
    backend: Backend | None = None,
    storage: Storage | None = None,
    clock: Clock | None = None,
) -> Starlette:
    """The web app on the adapters the settings ask for; tests may give fakes of any."""
    metrics = Metrics()
    backend = backend or build_backend(settings)
    service = build_service(
        settings,
        jobs=backend.jobs,
        storage=storage,
        clock=clock,
        on_deleted=metrics.observe_deletion,
    )
    metrics.watch(service)
    metrics.add(backend.collectors)
    live_logs = LiveLogs()
    app = Starlette(
        routes=routes.routes(service, metrics),
        middleware=middleware(settings),
        exception_handlers=routes.exception_handlers,
        lifespan=_lifespan(settings, service, backend, live_logs),
    )
    state = AppState(
        service=service,
        metrics=metrics,
        live_logs=live_logs,
        upload_limits=upload_limits(settings),
        map_summary=map_summary(settings),
        openapi=openapi(settings.server.auth.protect_metrics),
    )
    install(app, state)
    prepare_payload_folder(settings.server.payload_dir)
    app.router.redirect_slashes = False
    return app


def _lifespan(
    settings: Settings, service: InferenceService, backend: Backend, live_logs: LiveLogs
) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log_configuration(settings)
        try:
            async with (
                service.running(),
                live_logs.attached(),
                anyio.create_task_group() as background,
            ):
                if backend.warm_up is not None:
                    # a name of this process's own: replicas warming up at once do not meet
                    warming = sample_job_request(settings, f"warm-up-{secrets.token_hex(8)}")
                    background.start_soon(warm_up, backend.warm_up, warming)
                yield
                # requests a stop cancelled still stop their MAP and hand their files to deletion
                await wait_for_requests(
                    lambda: service.status().in_flight, CANCELLED_REQUESTS_SECONDS
                )
                background.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await backend.jobs.close()

    return lifespan


async def warm_up(backend: WarmUp, request: JobRequest) -> None:
    """The backend's warm-up, beside the service: what it raises is logged and goes no further,
    as it would stop the service with it (the backend's readiness says what it could not do)."""
    try:
        await backend.warm_up(request)
    except Exception:
        logger.exception("the backend's warm-up failed; MIS serves anyway")


async def wait_for_requests(in_flight: Callable[[], int], seconds: float) -> None:
    """Wait (up to `seconds`) until no request is in flight: requests a stop cancelled are
    still stopping their MAP and deleting their files, and need the backend open for it."""
    with anyio.move_on_after(seconds):
        while in_flight():  # noqa: ASYNC110 (the core keeps a count, not an event; once per stop)
            await anyio.sleep(0.02)
