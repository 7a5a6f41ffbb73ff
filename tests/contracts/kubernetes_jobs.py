"""The Kubernetes backend under the JobBackend contract, on the API double.

The double's kubelet (tests/k8s/kubelet.py `runs_locally`) runs each Job's container command
as a local process, on the hostPath folders its mounts name: the same small Python MAPs as the
process backend's, reading and writing the workspace where the Job's mounts would.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from mis_adapters.kubernetes.job import build_job
from mis_adapters.kubernetes.ownership import Owner
from mis_core.model import JobRequest, MapSpec, job_id_for
from mis_core.ports import JobBackend
from tests.contracts.adapters import (
    Behaviour,
    PythonMaps,
    pid_alive,
    pid_written,
    put,
    python_map,
)
from tests.harness.wait import await_until
from tests.k8s import kubelet
from tests.k8s.double import KubeDouble
from tests.k8s.helpers import backend_for, request_in

IMAGE = "example/map:1"  # the double's kubelet runs the command, whatever the image
# A MIS that died: its pod is gone (the double has none of that name), its Jobs still run.
CRASHED = Owner(token="crashed", pod_name="mis-crashed", pod_uid="uid-crashed")


class KubernetesBackend(PythonMaps):
    def __init__(self, tmp_path: Path, double: KubeDouble, env: pytest.MonkeyPatch) -> None:
        """`double`: the running API double, KUBECONFIG naming it; `env`: the test's own."""
        double.behaviour = kubelet.runs_locally()
        self.double = double
        self.env = env
        self.tmp_path = tmp_path
        self.pidfile = tmp_path / "pid"
        self.leftover = tmp_path / "leftover-pid"
        self.runs = 0

    def backend(self, *, startable: bool = True) -> JobBackend:
        """Unstartable: the kubeconfig names an API server with nothing listening (read when
        the backend first calls the API)."""
        server = self.double
        if not startable:
            server = KubeDouble()
            server.port = 1  # never started: nothing listens there
        self.env.setenv("KUBECONFIG", str(server.kubeconfig(self.tmp_path / "kubeconfig")))
        return backend_for(self.tmp_path)

    def request(
        self, behaviour: Behaviour, inputs: Mapping[str, bytes] | None = None
    ) -> JobRequest:
        self.runs += 1
        return self._request(f"contract-{self.runs}", behaviour, self.pidfile, inputs)

    def _request(
        self,
        name: str,
        behaviour: Behaviour,
        pidfile: Path,
        inputs: Mapping[str, bytes] | None = None,
    ) -> JobRequest:
        """In a workspace on the payload volume's hostPath, as MIS makes them."""
        spec = MapSpec(image=IMAGE, command=python_map(behaviour, pidfile))
        request = request_in(self.tmp_path, job_id_for(name), spec)
        put(Path(request.workspace.input_dir), inputs or {})
        return request

    async def leave_job(self) -> None:
        """The Job a MIS made before it died, as it made it (labels, owner reference)."""
        crashed = backend_for(self.tmp_path, CRASHED)
        request = self._request("left by a crashed MIS", "hang", self.leftover)
        api = await crashed.api()
        await api.create_job(build_job(request, await crashed.job_options(), CRASHED))
        await crashed.close()
        await await_until(lambda: pid_written(self.leftover), 10, "the leftover job to start")

    def left_running(self) -> bool:
        return pid_alive(self.leftover)

    def close(self) -> None:
        """Nothing: the double, stopping, ends its kubelets and so their processes."""
