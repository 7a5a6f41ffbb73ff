"""MIS's credentials to the API: a rotated service-account token, and a 401 read again.

In-cluster configuration against the API double served over TLS, with a service-account
folder (token, ca.crt, namespace) of the test's own; the double accepts only the token
it is told to, as an API server does once a bound token has been rotated.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from mis_adapters.kubernetes.backend import KubernetesJobBackend
from mis_adapters.kubernetes.credentials import connect
from mis_core.errors import BackendUnavailable
from tests.harness.certificates import self_signed
from tests.k8s import kubelet
from tests.k8s.double import KubeDouble
from tests.k8s.helpers import backend_for, request_in, run

pytestmark = pytest.mark.anyio


def rotate(token_file: Path, token: str) -> None:
    """Replace the token as the kubelet does: a new file put in place at once."""
    fresh = token_file.with_name(".token-new")
    fresh.write_text(token)
    os.replace(fresh, token_file)


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[KubeDouble, Path]]:
    """The double over TLS, MIS's environment as in a pod, and its service-account folder."""
    account = tmp_path / "serviceaccount"
    account.mkdir()
    double = KubeDouble(kubelet.finishes(0))
    double.tls = self_signed(tmp_path)
    certificate = double.tls[0]
    (account / "ca.crt").write_bytes(certificate.read_bytes())
    (account / "namespace").write_text("mis-pod-ns")
    (account / "token").write_text("token-1")
    double.faults.accept_only("token-1")
    double.start()
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(double.port))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    try:
        yield double, account
    finally:
        double.stop()


def in_pod(tmp_path: Path, account: Path) -> KubernetesJobBackend:
    return backend_for(tmp_path, connector=functools.partial(connect, service_account=account))


async def test_a_rotated_token_is_used_without_a_restart(
    cluster: tuple[KubeDouble, Path], tmp_path: Path
) -> None:
    double, account = cluster
    backend = in_pod(tmp_path, account)
    try:
        assert (await run(backend, request_in(tmp_path, "before"))).succeeded
        rotate(account / "token", "token-2")
        double.faults.accept_only("token-2")  # the old token is refused from now on
        second = await run(backend, request_in(tmp_path, "after"))
        await backend.check()
    finally:
        await backend.close()
    assert second.succeeded, second.reason
    assert double.faults.count("401") == 0  # the change was seen before any call was refused
    assert {call.namespace for call in double.requests if call.namespace} == {"mis-pod-ns"}


async def test_a_token_refused_for_good_is_said_after_one_reread(
    cluster: tuple[KubeDouble, Path], tmp_path: Path
) -> None:
    double, account = cluster
    double.faults.accept_only("someone-else's")
    backend = in_pod(tmp_path, account)
    try:
        with pytest.raises(BackendUnavailable, match="refused MIS's credentials") as raised:
            await run(backend, request_in(tmp_path, "refused"))
    finally:
        await backend.close()
    assert "401" in str(raised.value)
    assert double.faults.count("401") == 2  # the call, and once more after reading again
    assert double.items("jobs") == []


async def test_a_401_reads_the_kubeconfig_again_once(double: KubeDouble, tmp_path: Path) -> None:
    """Outside a pod: the kubeconfig's token changed under MIS; the 401 makes MIS read it."""
    double.behaviour = kubelet.finishes(0)
    backend = backend_for(tmp_path)
    kubeconfig = Path(os.environ["KUBECONFIG"])
    try:
        assert (await run(backend, request_in(tmp_path, "first"))).succeeded
        config = yaml.safe_load(kubeconfig.read_text())
        config["users"][0]["user"]["token"] = "renewed-token"
        kubeconfig.write_text(yaml.safe_dump(config))
        double.faults.accept_only("renewed-token")
        second = await run(backend, request_in(tmp_path, "second"))
    finally:
        await backend.close()
    assert second.succeeded, second.reason
    assert double.faults.count("401") == 1
