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
