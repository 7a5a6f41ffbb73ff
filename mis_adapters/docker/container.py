"""The container that runs the MAP once, as the Docker Engine API's create body (a plain dict).

Pure, like the Kubernetes Job builder: what MIS asks the engine for can be read in tests.
"""

from __future__ import annotations

from typing import Any

import attrs

from mis_adapters.labels import (
    LABEL_INSTANCE,
    LABEL_JOB_ID,
    LABEL_MANAGED_BY,
    LABEL_REQUEST_ID,
    MANAGED_BY,
)
from mis_core.model import JobRequest
from mis_core.quantity import MemoryQuantity


@attrs.frozen
class ContainerOptions:
    """The `docker` section of the configuration, as the builder needs it (the settings of
    the same names state the defaults; the bootstrap builds this)."""

    instance: str
    # Where server.payload_dir is on the engine's host, when MIS itself runs in a container.
    payload_host_dir: str
    user: str  # empty: the image's own user
    network: str
    cap_drop: tuple[str, ...] = attrs.field(converter=tuple)
    gpu_driver: str
    shm_size: str  # PyTorch data loaders want more than the engine's 64 MB
    pids_limit: int  # processes and threads in the container: a fork bomb stops here
    # MIS's own group: a MAP running as the image's own user reaches the workspace through it
    group_add: tuple[str, ...] = attrs.field(converter=tuple)


def container_name(options: ContainerOptions, request: JobRequest) -> str:
    return f"mis-{options.instance}-{request.job_id}"


def instance_labels(options: ContainerOptions) -> dict[str, str]:
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_INSTANCE: options.instance}


def build_container(request: JobRequest, options: ContainerOptions) -> dict[str, Any]:
    spec = request.map
    folders = request.container_folders
    env = request.environment(folders)
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
        config["Entrypoint"] = folders.substitute(spec.command)
    if spec.args or spec.command:
        config["Cmd"] = folders.substitute(spec.args)
    if options.user:
        config["User"] = options.user
    return config


def _host_folders(request: JobRequest, options: ContainerOptions) -> tuple[str, str]:
    """The workspace's input and output folders as the engine's host sees them."""
    workspace = request.workspace
    if options.payload_host_dir:
        workspace = workspace.on(options.payload_host_dir)
    return workspace.input_dir, workspace.output_dir


def _host_config(
    request: JobRequest, options: ContainerOptions, host: tuple[str, str]
) -> dict[str, Any]:
    spec = request.map
    config: dict[str, Any] = {
        "Binds": [f"{host[0]}:{spec.input_path}:ro", f"{host[1]}:{spec.output_path}:rw"],
        **_limits(request, options),
        "NetworkMode": options.network,
        "CapDrop": list(options.cap_drop),
        "SecurityOpt": ["no-new-privileges"],
    }
    if options.group_add:
        config["GroupAdd"] = list(options.group_add)
    if spec.resources.gpu:
        config["DeviceRequests"] = [
            {"Driver": options.gpu_driver, "Count": spec.resources.gpu, "Capabilities": [["gpu"]]}
        ]
    return config


def _limits(request: JobRequest, options: ContainerOptions) -> dict[str, int]:
    """Every quantity of the container, converted in this one place."""
    resources = request.map.resources
    limits = {
        "NanoCpus": resources.cpu.nano_cpus,
        "Memory": resources.memory.bytes,
        "MemorySwap": resources.memory.bytes,  # no swap beyond the limit, as in Kubernetes
        "PidsLimit": options.pids_limit,
    }
    if options.shm_size:
        limits["ShmSize"] = MemoryQuantity.parse(options.shm_size).bytes
    return limits
