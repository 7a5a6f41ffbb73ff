from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.k8s.double import KubeDouble


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
