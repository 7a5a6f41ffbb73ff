"""The composition root: settings → adapters → the core's InferenceService → the web app.

Nothing else builds adapters or the app: `mis_app.app` holds the routes, which read what
`create_app` puts in `app.state`; the command line takes what this module makes.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
import attrs
from loguru import logger
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.middleware import Middleware

from mis_adapters.clock import MonotonicClock
from mis_adapters.docker.backend import DockerJobBackend
from mis_adapters.docker.container import ContainerOptions
from mis_adapters.docker.engine import DockerEngine
from mis_adapters.kubernetes.job import JobOptions
from mis_adapters.process import sandbox
from mis_adapters.process.backend import ProcessJobBackend
from mis_adapters.process.exposure import ViewRefused
from mis_adapters.storage.volume import LocalStorage, PayloadLimits
from mis_app import app as routes
from mis_app.auth import OPEN_PATHS, AuthMiddleware, TokenFile
from mis_app.inference import BusyShortcut
from mis_app.live_log import LiveLogs
from mis_app.metrics import Metrics
from mis_app.openapi import openapi
from mis_app.readiness import PayloadFolder
from mis_app.request_id import RequestIdMiddleware
from mis_app.serve import CLEANUP_SECONDS, wait_for_requests
from mis_app.settings import Settings, SettingsError
from mis_app.upload import UploadLimits
from mis_core.gate import AdmissionGate
from mis_core.model import JobRequest, Workspace, job_id_for
from mis_core.ports import JobBackend
from mis_core.service import InferenceService

Options = TypeVar("Options")


def create_app(settings: Settings) -> Starlette:
    metrics = Metrics()
    service = build_service(settings, on_deleted=metrics.observe_deletion)
    metrics.watch(service)
    server = settings.server

    live_logs = LiveLogs()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log_configuration(settings)
        async with service.running(), live_logs.attached(), anyio.create_task_group() as background:
            warm_up = getattr(service.jobs, "warm_up", None)  # container backends have one
            if warm_up is not None and (
                settings.backend == "docker" or settings.kubernetes.warm_up
            ):
                background.start_soon(warm_up, sample_job_request(settings, "warm-up"))
            yield
            # requests a stop cancelled still stop their MAP and hand their files to deletion
            await wait_for_requests(lambda: len(service.in_flight), CLEANUP_SECONDS)
            background.cancel_scope.cancel()
        await service.jobs.close()

    app = Starlette(
        routes=routes.routes,
        # The request id first, so every answer carries it; the busy shortcut before routing,
        # so refusing one of a burst of requests costs as little as it can.
        middleware=[
            Middleware(RequestIdMiddleware),
            *_auth(settings),
            Middleware(
                BusyShortcut, gate=service.gate, metrics=metrics, paths=routes.INFERENCE_PATHS
            ),
        ],
        exception_handlers=routes.exception_handlers,
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.metrics = metrics
    app.state.map_summary = map_summary(settings)
    app.state.openapi = openapi(server.auth.protect_metrics)
    app.state.live_logs = live_logs
    app.state.upload_limits = UploadLimits(
        max_bytes=int(server.max_upload_bytes),
        idle_seconds=server.upload_idle_timeout_seconds,
        total_seconds=server.upload_timeout_seconds,
        min_bytes_per_second=server.min_upload_bytes_per_second,
    )
    app.state.payload_folder = PayloadFolder(server.payload_dir, server.stuck_deletion_seconds)
    app.router.redirect_slashes = False
    return app


def build_service(settings: Settings, **hooks: Any) -> InferenceService:
    server = settings.server
    storage = LocalStorage(
        server.payload_dir,
        PayloadLimits(
            max_upload_bytes=int(server.max_upload_bytes),
            max_extracted_bytes=int(server.max_extracted_bytes),
            max_entries=server.max_entries,
            max_compression_ratio=server.max_compression_ratio,
            max_output_bytes=int(server.max_output_bytes),
        ),
        compression_level=server.output_compression_level,
        compression=server.output_compression,
        workers=server.workers,
    )
    return InferenceService(
        map_spec=settings.map.spec(),
        storage=storage,
        jobs=build_job_backend(settings),
        clock=MonotonicClock(),
        gate=AdmissionGate(server.max_concurrent),
        **hooks,
    )


def build_job_backend(settings: Settings) -> JobBackend:
    if settings.backend == "kubernetes":
        # imported only when used: the Kubernetes client costs ~50 MB of memory
        from mis_adapters.kubernetes.backend import KubernetesJobBackend

        return KubernetesJobBackend(
            job_options(settings),
            delete_wait_seconds=settings.kubernetes.delete_wait_seconds,
            map_log_bytes=int(settings.server.map_log_max_bytes),
            resync_seconds=settings.kubernetes.resync_seconds,
            warm_up_seconds=settings.kubernetes.warm_up_timeout_seconds,
            api_retry_max_seconds=settings.kubernetes.api_retry_max_seconds,
        )
    if settings.backend == "docker":
        docker = settings.docker
        return DockerJobBackend(
            DockerEngine(docker.url),
            settings.map.image,
            _options(ContainerOptions, docker, group_add=(str(os.getgid()),)),
            pull=docker.pull,
            kill_grace_seconds=docker.stop_grace_seconds,
            map_log_bytes=int(settings.server.map_log_max_bytes),
        )
    return process_backend(settings)


def process_backend(
    settings: Settings, *, say: Callable[[str], object] | None = None
) -> ProcessJobBackend:
    """The process backend, with the sandbox `process.sandbox` asks for (probed here; a
    bubblewrap that does not work, or an allow-list that would show a payload folder or a
    secret, stops start-up), and what the MAP sees said (`say`: a line at a time; default:
    the log)."""
    try:
        chosen = sandbox.choose(settings.process.sandbox)
    except sandbox.SandboxUnavailable as exc:
        raise SettingsError(str(exc)) from None
    said, *also = sandbox.containment(chosen)
    tell = say or (logger.info if chosen.bwrap else logger.warning)
    tell(said)
    server = settings.server
    backend = ProcessJobBackend(
        settings.map.spec(),
        kill_grace_seconds=settings.process.kill_grace_seconds,
        pids_limit=settings.process.pids_limit,
        map_log_bytes=int(server.map_log_max_bytes),
        payload_root=server.payload_dir.absolute(),
        sandbox=chosen,
        secrets=mis_secrets(settings),
        read_only_paths=settings.process.read_only_paths,
    )
    try:
        view = backend.view()
    except ViewRefused as exc:
        raise SettingsError(f"process sandbox: {exc}") from None
    for line in [*also, *(view.describe() if view else [])]:
        (say or logger.info)(line)
    return backend


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


def map_summary(settings: Settings) -> dict[str, object]:
    """The configured MAP as /v1/status shows it: no environment values (they may be secrets)."""
    spec = settings.map.spec()
    return {
        "backend": settings.backend,
        "image": spec.image,
        "command": [*spec.command, *spec.args],
        "input_path": spec.input_path,
        "output_path": spec.output_path,
        "resources": {
            "cpu": str(spec.resources.cpu),
            "memory": str(spec.resources.memory),
            "gpu": spec.resources.gpu,
        },
        "timeout_seconds": spec.timeout_seconds,
    }


def log_configuration(settings: Settings) -> None:
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


def _auth(settings: Settings) -> list[Middleware]:
    auth = settings.server.auth
    if auth.tokens_file is None:
        return []
    page = {"/", *(f"/static/{file.name}" for file in routes.STATIC.iterdir())}  # asks the token
    open_paths = OPEN_PATHS | {"/openapi.json"} | page
    if not auth.protect_metrics:
        open_paths |= {"/metrics"}
    return [Middleware(AuthMiddleware, tokens=TokenFile(auth.tokens_file), open_paths=open_paths)]
