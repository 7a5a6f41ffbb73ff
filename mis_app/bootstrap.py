"""The composition root: settings → adapters → the core's InferenceService → the web app.

Nothing else builds adapters or the app: `mis_app.app` holds the routes, which read the
state (`mis_app.state`) `create_app` stores; the command line takes what this module makes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import attrs
from loguru import logger
from prometheus_client.registry import Collector
from pydantic import BaseModel
from starlette.applications import Starlette

from mis_adapters.clock import MonotonicClock
from mis_adapters.docker.backend import DockerJobBackend
from mis_adapters.docker.container import ContainerOptions
from mis_adapters.docker.engine import ContainerEngine, DockerEngine
from mis_adapters.docker.options import DockerOptions
from mis_adapters.kubernetes.job import JobOptions
from mis_adapters.kubernetes.options import KubernetesOptions
from mis_adapters.process import sandbox
from mis_adapters.process.backend import ProcessJobBackend
from mis_adapters.process.exposure import ViewRefused
from mis_adapters.process.options import ProcessOptions
from mis_adapters.storage.limits import PayloadLimits
from mis_adapters.storage.readiness import prepare_payload_folder
from mis_adapters.storage.volume import LocalStorage
from mis_app import app as routes
from mis_app.live_log import LiveLogs
from mis_app.metrics import Metrics
from mis_app.middleware import middleware
from mis_app.openapi import openapi
from mis_app.serve import CLEANUP_SECONDS, wait_for_requests
from mis_app.settings import Settings, SettingsError
from mis_app.state import AppState, install
from mis_app.summary import log_configuration, map_summary
from mis_app.upload import UploadLimits
from mis_core.gate import AdmissionGate
from mis_core.model import JobRequest, Workspace, job_id_for
from mis_core.ports import Clock, JobBackend, Storage, WarmUp
from mis_core.service import InferenceService

if TYPE_CHECKING:
    from mis_adapters.kubernetes.backend import KubernetesJobBackend

Options = TypeVar("Options")


@attrs.frozen
class Backend:
    """The job backend, and the optional ports it offers beside JobBackend."""

    jobs: JobBackend
    warm_up: WarmUp | None = None  # started with the service when the settings ask for it
    collectors: Sequence[Collector] = ()  # its own metrics


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
    gate = build_gate(settings)  # the service's, and the inference routes' busy shortcut's
    service = build_service(
        settings,
        jobs=backend.jobs,
        storage=storage,
        clock=clock,
        gate=gate,
        on_deleted=metrics.observe_deletion,
    )
    metrics.watch(service)
    metrics.add(backend.collectors)
    server = settings.server

    live_logs = LiveLogs()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log_configuration(settings)
        async with service.running(), live_logs.attached(), anyio.create_task_group() as background:
            if backend.warm_up is not None:
                background.start_soon(
                    backend.warm_up.warm_up, sample_job_request(settings, "warm-up")
                )
            yield
            # requests a stop cancelled still stop their MAP and hand their files to deletion
            await wait_for_requests(lambda: service.status().in_flight, CLEANUP_SECONDS)
            background.cancel_scope.cancel()
        await service.jobs.close()

    app = Starlette(
        routes=routes.routes(gate, metrics),
        middleware=middleware(settings),
        exception_handlers=routes.exception_handlers,
        lifespan=lifespan,
    )
    state = AppState(
        settings=settings,
        service=service,
        metrics=metrics,
        live_logs=live_logs,
        upload_limits=upload_limits(settings),
        map_summary=map_summary(settings),
        openapi=openapi(server.auth.protect_metrics),
    )
    install(app, state)
    prepare_payload_folder(server.payload_dir)
    app.router.redirect_slashes = False
    return app


def upload_limits(settings: Settings) -> UploadLimits:
    """What the edge allows an upload: the one check of its size, as its bytes arrive."""
    server = settings.server
    return UploadLimits(
        max_bytes=int(server.max_upload_bytes),
        idle_seconds=server.upload_idle_timeout_seconds,
        total_seconds=server.upload_timeout_seconds,
        min_bytes_per_second=server.min_upload_bytes_per_second,
    )


def build_service(
    settings: Settings,
    *,
    jobs: JobBackend | None = None,
    storage: Storage | None = None,
    clock: Clock | None = None,
    gate: AdmissionGate | None = None,
    **hooks: Any,
) -> InferenceService:
    """The core's service on the adapters the settings ask for, or on those given (fakes)."""
    return InferenceService(
        map_spec=settings.map.spec(),
        storage=storage or build_storage(settings),
        jobs=jobs or build_backend(settings).jobs,
        clock=clock or MonotonicClock(),
        gate=gate or build_gate(settings),
        stuck_deletion_seconds=settings.server.stuck_deletion_seconds,
        **hooks,
    )


def build_gate(settings: Settings) -> AdmissionGate:
    """The one gate: the service admits through it, the busy shortcut reads it."""
    return AdmissionGate(settings.server.max_concurrent)


def build_storage(settings: Settings) -> LocalStorage:
    server = settings.server
    return LocalStorage(
        server.payload_dir,
        _options(PayloadLimits, server),
        compression_level=server.output_compression_level,
        compression=server.output_compression,
        workers=server.workers,
    )


def build_backend(settings: Settings) -> Backend:
    """The backend `settings.backend` names, with the warm-up and metrics it offers."""
    if settings.backend == "kubernetes":
        kubernetes = kubernetes_backend(settings)
        warm_up = kubernetes if settings.kubernetes.warm_up else None
        return Backend(kubernetes, warm_up, kubernetes.metrics_collectors())
    if settings.backend == "docker":
        docker = docker_backend(settings)
        return Backend(docker, warm_up=docker)
    return Backend(process_backend(settings))


def kubernetes_backend(settings: Settings, **seams: Any) -> KubernetesJobBackend:
    """`seams`: the API's `connector` and the Jobs' `owner` (tests)."""
    from mis_adapters.kubernetes.backend import KubernetesJobBackend  # here only: ~50 MB

    return KubernetesJobBackend(kubernetes_options(settings), **seams)


def kubernetes_options(settings: Settings) -> KubernetesOptions:
    """The `kubernetes` section as the backend takes it, the Jobs' options among it."""
    return _options(
        KubernetesOptions,
        settings.kubernetes,
        job=job_options(settings),
        map_log_bytes=int(settings.server.map_log_max_bytes),
    )


def docker_backend(settings: Settings, engine: ContainerEngine | None = None) -> DockerJobBackend:
    """`engine`: the engine's client (default: the one at docker.url)."""
    return DockerJobBackend(engine or DockerEngine(settings.docker.url), docker_options(settings))


def docker_options(settings: Settings) -> DockerOptions:
    """The `docker` section as the backend takes it, the containers' options among it."""
    return _options(
        DockerOptions,
        settings.docker,
        container=container_options(settings),
        image=settings.map.image,
        map_log_bytes=int(settings.server.map_log_max_bytes),
    )


def process_backend(
    settings: Settings, *, say: Callable[[str], object] | None = None
) -> ProcessJobBackend:
    """The process backend in the sandbox `process.sandbox` asks for (a bubblewrap that does
    not work, or an allow-list showing a payload folder or a secret, stops start-up), and
    what the MAP sees said (`say`: a line at a time; default: the log)."""
    options = process_options(settings)
    said, *also = sandbox.containment(options.sandbox)
    tell = say or (logger.info if options.sandbox.bwrap else logger.warning)
    tell(said)
    backend = ProcessJobBackend(settings.map.spec(), options)
    try:
        view = backend.view()
    except ViewRefused as exc:
        raise SettingsError(f"process sandbox: {exc}") from None
    for line in [*also, *(view.describe() if view else [])]:
        (say or logger.info)(line)
    return backend


def process_options(settings: Settings) -> ProcessOptions:
    """The `process` section as the backend takes it, with the sandbox probed."""
    try:
        chosen = sandbox.choose(settings.process.sandbox)
    except sandbox.SandboxUnavailable as exc:
        raise SettingsError(str(exc)) from None
    return _options(
        ProcessOptions,
        settings.process,
        map_log_bytes=int(settings.server.map_log_max_bytes),
        payload_root=settings.server.payload_dir.absolute(),
        sandbox=chosen,
        secrets=mis_secrets(settings),
    )


def mis_secrets(settings: Settings) -> dict[str, str | os.PathLike[str] | None]:
    """The files of MIS's that no MAP may see, each with what it is."""
    server = settings.server
    engine = settings.docker.url
    secrets: dict[str, str | os.PathLike[str] | None] = {
        "configuration file": settings.source,
        "tokens file (server.auth.tokens_file)": server.auth.tokens_file,
        "TLS key (server.tls.key_file)": server.tls.key_file,
        "container engine socket (docker.url)": (
            engine.removeprefix("unix://") if engine.startswith("unix://") else ""
        ),
    }
    for index, kubeconfig in enumerate(os.environ.get("KUBECONFIG", "").split(os.pathsep)):
        secrets[f"kubeconfig (KUBECONFIG, {index + 1})"] = kubeconfig
    return secrets


def container_options(settings: Settings) -> ContainerOptions:
    """The `docker` section as the container builder takes it; the container joins MIS's own
    group (no setting), to share the workspace."""
    return _options(ContainerOptions, settings.docker, group_add=(str(os.getgid()),))


def job_options(settings: Settings) -> JobOptions:
    """The `kubernetes` section as the Job builder takes it; the node comes from NODE_NAME."""
    k8s = settings.kubernetes
    node_name = k8s.node_name or os.environ.get("NODE_NAME", "")
    return _options(JobOptions, k8s, k8s.payload_volume, node_name=node_name)


def _options(cls: type[Options], *sections: BaseModel, **values: Any) -> Options:
    """An attrs options class from the settings keys of the same names; `values` win."""
    names = attrs.fields_dict(cls)  # type: ignore[arg-type]
    found = {
        key: value
        for section in sections
        for key, value in section.model_dump().items()
        if key in names
    }
    return cls(**{**found, **values})


def sample_job_request(settings: Settings, name: str = "sample-request") -> JobRequest:
    """A request as MIS would make it, for warm-up and for `mis kubernetes render-job`;
    `name` is its request id and its workspace's, and its job id is derived from it."""
    workspace = Workspace(str(settings.server.payload_dir.absolute()), name)
    return JobRequest(job_id_for(name), settings.map.spec(), workspace, request_id=name)
