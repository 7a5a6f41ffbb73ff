"""The adapters the settings name, and the core's InferenceService on them (or on fakes a test
gives): the payload volume, the job backend with the optional ports it offers beside it.

The Kubernetes client (~50 MB) is imported only when the settings ask for that backend.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
from loguru import logger
from prometheus_client.registry import Collector

from mis_adapters.clock import MonotonicClock
from mis_adapters.docker.backend import DockerJobBackend
from mis_adapters.docker.engine import ContainerEngine, DockerEngine
from mis_adapters.kubernetes.ownership import Owner
from mis_adapters.process import sandbox
from mis_adapters.process.backend import ProcessJobBackend
from mis_adapters.process.exposure import ViewRefused
from mis_adapters.storage.limits import PayloadLimits
from mis_adapters.storage.volume import LocalStorage
from mis_app.bootstrap.options import docker_options, kubernetes_options, process_options
from mis_app.settings import Settings, SettingsError
from mis_app.settings.mapping import from_settings
from mis_core.gate import AdmissionGate
from mis_core.model import JobRequest, Workspace, job_id_for
from mis_core.ports import Clock, JobBackend, Storage, WarmUp
from mis_core.service import InferenceService

if TYPE_CHECKING:
    from mis_adapters.kubernetes.backend import KubernetesJobBackend


@attrs.frozen
class Backend:
    """The job backend, and the optional ports it offers beside JobBackend."""

    jobs: JobBackend
    warm_up: WarmUp | None = None  # started with the service when the settings ask for it
    collectors: Sequence[Collector] = ()  # its own metrics


def build_service(
    settings: Settings,
    *,
    jobs: JobBackend | None = None,
    storage: Storage | None = None,
    clock: Clock | None = None,
    **hooks: Any,
) -> InferenceService:
    """The core's service on the adapters the settings ask for, or on those given (fakes). Its
    admission gate is its own: the edge asks the service whether it is busy."""
    return InferenceService(
        map_spec=settings.map.spec(),
        storage=storage or build_storage(settings),
        jobs=jobs or build_backend(settings).jobs,
        clock=clock or MonotonicClock(),
        gate=AdmissionGate(settings.server.max_concurrent),
        stuck_deletion_seconds=settings.server.stuck_deletion_seconds,
        **hooks,
    )


def build_storage(settings: Settings) -> LocalStorage:
    server = settings.server
    return LocalStorage(
        server.payload_dir,
        from_settings(PayloadLimits, server),
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


def kubernetes_backend(
    settings: Settings, *, owner: Owner | None = None, **seams: Any
) -> KubernetesJobBackend:
    """`owner`: MIS's pod, whose Jobs these are (default: the one MIS's environment names);
    `seams`: the API's `connector` (tests)."""
    from mis_adapters.kubernetes.backend import KubernetesJobBackend  # here only: ~50 MB

    owner = owner or Owner.from_environment()
    return KubernetesJobBackend(kubernetes_options(settings), owner=owner, **seams)


def docker_backend(settings: Settings, engine: ContainerEngine | None = None) -> DockerJobBackend:
    """`engine`: the engine's client (default: the one at docker.url)."""
    return DockerJobBackend(engine or DockerEngine(settings.docker.url), docker_options(settings))


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


def sample_job_request(settings: Settings, name: str = "sample-request") -> JobRequest:
    """A request as MIS would make it, for warm-up and for `mis kubernetes render-job`;
    `name` is its request id and its workspace's, and its job id is derived from it."""
    workspace = Workspace(str(settings.server.payload_dir.absolute()), name)
    return JobRequest(job_id_for(name), settings.map.spec(), workspace, request_id=name)
