"""The container that runs the MAP once, as the Docker Engine API's create body (a plain dict).

Pure, like the Kubernetes Job builder: what MIS asks the engine for can be read in tests.
"""

from __future__ import annotations

import posixpath
from typing import Any

import attrs

from mis_adapters.labels import (
    LABEL_INSTANCE,
    LABEL_JOB_ID,
    LABEL_MANAGED_BY,
    LABEL_REQUEST_ID,
    MANAGED_BY,
)
from mis_core.model import (
    JobRequest,
    cpu_cores,
    map_environment,
    memory_bytes,
    substitute_paths,
    thread_environment,
)


@attrs.frozen
class ContainerOptions:
    """The `docker` section of the configuration, as the builder needs it."""

    instance: str = "mis"
    # Where server.payload_dir is on the engine's host, when MIS itself runs in a container.
    payload_host_dir: str = ""
    user: str = ""  # empty: the image's own user
    network: str = "none"  # a MAP reads and writes files; it needs no network
    cap_drop: tuple[str, ...] = ("ALL",)
    gpu_driver: str = "nvidia"
    shm_size: str = ""  # PyTorch data loaders want more than the engine's 64 MB


def container_name(options: ContainerOptions, request: JobRequest) -> str:
    return f"mis-{options.instance}-{request.job_id}"


def instance_labels(options: ContainerOptions) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_INSTANCE: options.instance}


def build_container(request: JobRequest, options: ContainerOptions) -> dict[str, Any]:
    spec = request.map
    env = thread_environment(spec.resources)
    env.update(map_environment(spec, request.request_id, spec.input_path, spec.output_path))
    host = _host_folders(request, options)
    config: dict[str, Any] = {
        "Image": spec.image,
        "Env": [f"{key}={value}" for key, value in env.items()],
        "Labels": {
            **instance_labels(options),
            LABEL_JOB_ID: request.job_id,
            LABEL_REQUEST_ID: request.request_id,
        },
        "HostConfig": _host_config(request, options, host),
    }
    if spec.command:  # like Kubernetes: command replaces the entrypoint, args the image's CMD
        config["Entrypoint"] = substitute_paths(spec.command, spec.input_path, spec.output_path)
    if spec.args or spec.command:
        config["Cmd"] = substitute_paths(spec.args, spec.input_path, spec.output_path)
    if options.user:
        config["User"] = options.user
    return config


def _host_folders(request: JobRequest, options: ContainerOptions) -> tuple[str, str]:
    """The workspace's input and output folders as the engine's host sees them."""
    workspace = request.workspace
    if not options.payload_host_dir:
        return workspace.input_dir, workspace.output_dir
    root = posixpath.join(options.payload_host_dir, request.request_id)
    return posixpath.join(root, "input"), posixpath.join(root, "output")


def _host_config(
    request: JobRequest, options: ContainerOptions, host: tuple[str, str]
) -> dict[str, Any]:
    spec = request.map
    memory = memory_bytes(spec.resources.memory)
    config: dict[str, Any] = {
        "Binds": [f"{host[0]}:{spec.input_path}:ro", f"{host[1]}:{spec.output_path}:rw"],
        "NanoCpus": int(cpu_cores(spec.resources.cpu) * 1e9),
        "Memory": memory,
        "MemorySwap": memory,  # no swap beyond the limit, as in Kubernetes
        "NetworkMode": options.network,
        "CapDrop": list(options.cap_drop),
        "SecurityOpt": ["no-new-privileges"],
    }
    if spec.resources.gpu:
        config["DeviceRequests"] = [
            {"Driver": options.gpu_driver, "Count": spec.resources.gpu, "Capabilities": [["gpu"]]}
        ]
    if options.shm_size:
        config["ShmSize"] = memory_bytes(options.shm_size)
    return config
