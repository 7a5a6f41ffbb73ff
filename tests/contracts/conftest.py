"""Each contract test runs once per implementation of its port: the fake and the real ones."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.contracts.adapters import (
    BackendUnderTest,
    FakeBackend,
    FakeVolume,
    LocalVolume,
    ProcessBackend,
    StorageUnderTest,
)
from tests.contracts.docker_jobs import DockerBackend
from tests.contracts.kubernetes_jobs import KubernetesBackend

Harness = Callable[[pytest.FixtureRequest, Path], BackendUnderTest]


@pytest.fixture(params=[FakeVolume, LocalVolume], ids=["fake", "local"])
def volume(request: pytest.FixtureRequest, tmp_path: Path) -> StorageUnderTest:
    made: StorageUnderTest = request.param(tmp_path)
    return made


def _fake(request: pytest.FixtureRequest, tmp_path: Path) -> BackendUnderTest:
    return FakeBackend(tmp_path)


def _process(request: pytest.FixtureRequest, tmp_path: Path) -> BackendUnderTest:
    return ProcessBackend(tmp_path)


def _kubernetes(request: pytest.FixtureRequest, tmp_path: Path) -> BackendUnderTest:
    """On the API double (the `double` fixture)."""
    double = request.getfixturevalue("double")
    return KubernetesBackend(tmp_path, double, request.getfixturevalue("monkeypatch"))


def _docker(request: pytest.FixtureRequest, tmp_path: Path) -> BackendUnderTest:
    """On Podman (the `engine` fixture: unavailable without podman)."""
    return DockerBackend(tmp_path, request.getfixturevalue("engine"))


@pytest.fixture(
    params=[_fake, _process, _kubernetes, _docker],
    ids=["fake", "process", "kubernetes", "docker"],
)
def jobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendUnderTest]:
    harness: Harness = request.param
    made = harness(request, tmp_path)
    yield made
    made.close()
