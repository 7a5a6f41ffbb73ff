from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.docker.engine import Engine, podman_engine


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """Podman's Docker-compatible service with the test MAP image (CI installs podman)."""
    podman = require_tool("podman")
    require_tool("runc")
    busybox = Path(require_tool("busybox")).resolve()
    with podman_engine(podman, busybox, tmp_path_factory.mktemp("podman")) as running:
        yield running
