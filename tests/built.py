"""Adapters as MIS builds them: from the settings, through the bootstrap, changed only where a
test says so. The defaults stay where the settings state them, and nowhere else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from mis_adapters.docker.container import ContainerOptions
from mis_adapters.kubernetes.job import JobOptions
from mis_adapters.process.options import ProcessOptions
from mis_adapters.storage.volume import LocalStorage
from mis_app import bootstrap
from mis_app.settings import Settings

A_MAP = {"command": ["true"], "image": "example/map:1"}  # what every backend needs of it
PAYLOAD_VOLUME_KEYS = {"claim_name", "host_path", "node_local"}


def settings(**sections: Any) -> Settings:
    """The settings with these sections (as a configuration file has them), defaults beside."""
    return Settings.model_validate({"map": A_MAP, **sections})


def process_options(**changes: Any) -> ProcessOptions:
    """The process backend's options, without the sandbox unless `changes` give one."""
    return attrs.evolve(bootstrap.process_options(settings(process={"sandbox": "none"})), **changes)


def job_options(**kubernetes: Any) -> JobOptions:
    """The Job builder's options from these `kubernetes` settings (the payload volume's keys
    among them; default: a claim)."""
    volume = {key: kubernetes.pop(key) for key in PAYLOAD_VOLUME_KEYS & kubernetes.keys()}
    section = {**kubernetes, "payload_volume": volume or {"claim_name": "payload"}}
    return bootstrap.job_options(settings(backend="kubernetes", kubernetes=section))


def container_options(**docker: Any) -> ContainerOptions:
    """The container builder's options from these `docker` settings."""
    return bootstrap.container_options(settings(backend="docker", docker=docker))


def local_storage(root: Path, **server: Any) -> LocalStorage:
    """The payload storage on `root`, with these `server` settings changed."""
    return bootstrap.build_storage(settings(server={"payload_dir": str(root), **server}))
