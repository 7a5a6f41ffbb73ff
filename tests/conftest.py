"""Shared fixtures: starting MIS, required tools, the anyio backend, the engine and images."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.docker.engine import Engine, podman_engine
from tests.harness import servers
from tests.harness.unavailable import require_tool, unavailable
from tests.k8s.double import KubeDouble
from tools.images import build_all, load_all

if TYPE_CHECKING:
    from tests.nonroot import NonRoot


@pytest.fixture(scope="session")
def mis_server() -> servers.ServerFactory:
    """Starts MIS: `with mis_server(work, overrides, backend=..., nonroot=..., env=...) as s`.

    Session-scoped, so module-scoped fixtures share one server; see tests/harness/servers.py."""
    return servers.mis_server


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
def tiny_volume(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, for a payload volume that fills up (needs root, as CI has)."""
    volume = tmp_path / "payload"
    volume.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(volume)], capture_output=True
    )
    if result.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield volume
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False)


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


@pytest.fixture(scope="session")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """Podman's Docker-compatible service with the test MAP image (CI installs podman)."""
    podman = require_tool("podman")
    require_tool("runc")
    busybox = Path(require_tool("busybox")).resolve()
    with podman_engine(podman, busybox, tmp_path_factory.mktemp("podman")) as running:
        yield running


@pytest.fixture(scope="session")
def images(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The MIS image and the example MAP image in the engine's storage; {"mis": tag, "map": tag}.

    Built once per run on a Debian base made here from the machine's apt sources (mmdebstrap),
    as `nox -s image` builds them; or, when MIS_IMAGE_ARCHIVES names the folder `nox -s image`
    saved them to (CI builds them there once), loaded from it.
    """
    archives = os.environ.get("MIS_IMAGE_ARCHIVES")
    if archives:
        return load_all(engine.podman, Path(archives))
    require_tool("mmdebstrap")
    return build_all(engine.podman, tmp_path_factory.mktemp("images"))
