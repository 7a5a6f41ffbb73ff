"""The `docker` section: the container engine and each request's container."""

from __future__ import annotations

from pydantic import Field, field_validator

from mis_adapters.docker.options import PullPolicy
from mis_app.settings.section import Section
from mis_core.quantity import MemoryQuantity


class DockerSettings(Section):
    """The Docker Engine API (Docker, or Podman's Docker-compatible service)."""

    url: str = Field("unix:///var/run/docker.sock", pattern=r"^(unix|tcp|http|https)://")
    instance: str = Field("mis", pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
    pull: PullPolicy = "missing"  # at start-up and when missing
    # Where server.payload_dir is on the engine's host, when MIS itself runs in a container.
    payload_host_dir: str = ""
    user: str = ""  # user[:group] inside the container; empty: the image's own
    network: str = "none"  # a MAP reads and writes files; it needs no network
    cap_drop: list[str] = ["ALL"]
    gpu_driver: str = "nvidia"
    shm_size: str = ""
    pids_limit: int = Field(4096, ge=16)  # processes and threads: a fork bomb stops here

    @field_validator("shm_size")
    @classmethod
    def _shm_size(cls, value: str) -> str:
        return value and str(MemoryQuantity.parse(value))

    stop_grace_seconds: float = Field(5.0, ge=0)  # SIGTERM, then SIGKILL after this
