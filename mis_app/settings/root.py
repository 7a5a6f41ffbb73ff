"""The whole configuration: its sections, and what the chosen backend needs of them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import PrivateAttr, model_validator

from mis_app.settings.docker import DockerSettings
from mis_app.settings.kubernetes import KubernetesSettings
from mis_app.settings.map import MapSettings
from mis_app.settings.process import ProcessSettings
from mis_app.settings.section import Section
from mis_app.settings.server import ServerSettings

# What a stop waits for requests in flight beyond a whole MAP run, unless
# server.shutdown_grace_seconds says how long: for the result to be sent and the files deleted.
SHUTDOWN_GRACE_BEYOND_MAP_SECONDS = 30.0


class Settings(Section):
    backend: Literal["process", "kubernetes", "docker"] = "process"
    server: ServerSettings = ServerSettings()
    map: MapSettings = MapSettings()
    process: ProcessSettings = ProcessSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    docker: DockerSettings = DockerSettings()
    _source: Path | None = PrivateAttr(None)  # the file read, which a MAP must not see

    @property
    def source(self) -> Path | None:
        return self._source

    @property
    def shutdown_grace_seconds(self) -> float:
        """How long a stop waits for requests in flight: server.shutdown_grace_seconds, by
        default a whole MAP run (map.timeout_seconds) and SHUTDOWN_GRACE_BEYOND_MAP_SECONDS."""
        grace = self.server.shutdown_grace_seconds
        if grace is None:
            return self.map.timeout_seconds + SHUTDOWN_GRACE_BEYOND_MAP_SECONDS
        return grace

    @model_validator(mode="after")
    def _backend_needs(self) -> Settings:
        if self.backend == "process" and not self.map.command and not self.map.from_manifest:
            raise ValueError(
                "map.command: the process backend needs the MAP's command, as a list "
                'such as ["python3", "app.py", "-i", "{input_path}", "-o", "{output_path}"]'
            )
        if not self.map.image:
            if self.backend != "process":
                raise ValueError(f"map.image: the {self.backend} backend needs the MAP's image")
            if self.map.from_manifest:
                raise ValueError("map.image: map.from_manifest reads the manifest of map.image")
        if self.backend == "kubernetes":
            volume = self.kubernetes.payload_volume
            if bool(volume.claim_name) == bool(volume.host_path):
                raise ValueError(
                    "kubernetes.payload_volume: set exactly one of claim_name (a "
                    "PersistentVolumeClaim) or host_path (a folder on the node)"
                )
        return self
