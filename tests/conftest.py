"""Shared test helpers: required tools, and the anyio backend."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.k8s.double import KubeDouble

if TYPE_CHECKING:
    from tests.nonroot import NonRoot

REQUIRE_ALL = os.environ.get("MIS_REQUIRE_ALL") == "1"


def require_tool(name: str) -> str:
    """The path of `name`; skip without it, or fail when CI sets MIS_REQUIRE_ALL=1."""
    path = shutil.which(name)
    if path is None:
        message = f"the {name!r} command is not installed"
        if REQUIRE_ALL:
            pytest.fail(f"{message} (MIS_REQUIRE_ALL=1)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def nonroot() -> Iterator[NonRoot]:
    """MIS's unprivileged user: see tests/nonroot.py."""
    from tests.nonroot import make_nonroot

    environment = make_nonroot()
    try:
        yield environment
    finally:
        environment.remove()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def double(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[KubeDouble]:
    """A running API double; KUBECONFIG points at it (namespace mis-test)."""
    kube = KubeDouble().start()
    monkeypatch.setenv("KUBECONFIG", str(kube.kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    try:
        yield kube
    finally:
        kube.stop()
