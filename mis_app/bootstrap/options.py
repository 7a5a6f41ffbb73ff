"""Each adapter's options from the settings: the keys of the same names, and the few values a
builder adds (a size in bytes, MIS's own group, the node it runs on, the files no MAP may see).

The adapters state no defaults of their own; the settings do (tests/app/test_wiring.py).
"""

from __future__ import annotations

import os

from mis_adapters.docker.container import ContainerOptions
from mis_adapters.docker.options import DockerOptions
from mis_adapters.kubernetes.job import JobOptions
from mis_adapters.kubernetes.options import KubernetesOptions
from mis_adapters.process import sandbox
from mis_adapters.process.options import ProcessOptions
from mis_app.settings import Settings, SettingsError
from mis_app.settings.mapping import from_settings
from mis_app.upload import UploadLimits


def upload_limits(settings: Settings) -> UploadLimits:
    """What the edge allows an upload: the one check of its size, as its bytes arrive."""
    server = settings.server
    return UploadLimits(
        max_bytes=int(server.max_upload_bytes),
        idle_seconds=server.upload_idle_timeout_seconds,
        total_seconds=server.upload_timeout_seconds,
        min_bytes_per_second=server.min_upload_bytes_per_second,
    )


def kubernetes_options(settings: Settings) -> KubernetesOptions:
    """The `kubernetes` section as the backend takes it, the Jobs' options among it."""
    return from_settings(
        KubernetesOptions,
        settings.kubernetes,
        job=job_options(settings),
        map_log_bytes=int(settings.server.map_log_max_bytes),
    )


def job_options(settings: Settings) -> JobOptions:
    """The `kubernetes` section as the Job builder takes it; the node comes from NODE_NAME."""
    k8s = settings.kubernetes
    node_name = k8s.node_name or os.environ.get("NODE_NAME", "")
    return from_settings(JobOptions, k8s, k8s.payload_volume, node_name=node_name)


def docker_options(settings: Settings) -> DockerOptions:
    """The `docker` section as the backend takes it, the containers' options among it."""
    return from_settings(
        DockerOptions,
        settings.docker,
        container=container_options(settings),
        image=settings.map.image,
        map_log_bytes=int(settings.server.map_log_max_bytes),
    )


def container_options(settings: Settings) -> ContainerOptions:
    """The `docker` section as the container builder takes it; the container joins MIS's own
    group (no setting), to share the workspace."""
    return from_settings(ContainerOptions, settings.docker, group_add=(str(os.getgid()),))


def process_options(settings: Settings) -> ProcessOptions:
    """The `process` section as the backend takes it, with the sandbox probed."""
    try:
        chosen = sandbox.choose(settings.process.sandbox)
    except sandbox.SandboxUnavailable as exc:
        raise SettingsError(str(exc)) from None
    return from_settings(
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
