"""The composition root: settings → adapters → the core's InferenceService.

Nothing else builds adapters; the web layer (`mis_app.app`) and the command line take what
this module makes.
"""

from __future__ import annotations

import os

from loguru import logger

from mis_adapters.clock import MonotonicClock
from mis_adapters.docker.backend import DockerJobBackend
from mis_adapters.docker.container import ContainerOptions
from mis_adapters.docker.engine import DockerEngine
from mis_adapters.kubernetes.job import JobOptions
from mis_adapters.process.backend import ProcessJobBackend
from mis_adapters.storage.volume import LocalStorage, PayloadLimits
from mis_app.settings import Settings
from mis_core.gate import AdmissionGate
from mis_core.model import JobRequest, Workspace
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
        from mis_adapters.kubernetes.backend import KubernetesJobBackend

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
            "cpu": spec.resources.cpu,
            "memory": spec.resources.memory,
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
