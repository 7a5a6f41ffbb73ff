"""Each contract test runs once per implementation of its port: the fake and the real one."""

from __future__ import annotations

from collections.abc import Iterator
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


@pytest.fixture(params=[FakeVolume, LocalVolume], ids=["fake", "local"])
def volume(request: pytest.FixtureRequest, tmp_path: Path) -> StorageUnderTest:
    made: StorageUnderTest = request.param(tmp_path)
    return made


@pytest.fixture(params=[FakeBackend, ProcessBackend], ids=["fake", "process"])
def jobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendUnderTest]:
    made: BackendUnderTest = request.param(tmp_path)
    yield made
    made.close()
