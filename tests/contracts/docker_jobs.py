"""The docker backend under the JobBackend contract, on Podman's Docker-compatible service.

Its MAPs are shell scripts in the test MAP image (busybox, tests/docker/engine.py), one per
behaviour. Each harness has an instance name of its own, so it sees, sweeps and cleans up only
its own containers, whatever else the engine runs.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio

from mis_adapters.docker.container import build_container, container_name
from mis_adapters.labels import LABEL_INSTANCE, LABEL_JOB_ID
from mis_app import bootstrap
from mis_app.settings import Settings
from mis_core.model import JobRequest, MapSpec, job_id_for
from mis_core.ports import JobBackend
from tests.adapters.process_jobs import workspace
from tests.built import settings
from tests.contracts.adapters import FAILING_CODE, FAILING_LOG, Behaviour, put, tree
from tests.docker.engine import Engine
from tests.harness.configs import MAP_IMAGE

# PID 1 of a container gets only the signals it handles: the polite MAP ends on SIGTERM, the
# stubborn one ignores it and waits for the engine's SIGKILL.
SCRIPTS: dict[Behaviour, str] = {
    "succeed": 'cp -r "$MONAI_INPUTPATH/." "$MONAI_OUTPUTPATH/"',
    "fail": f"echo '{FAILING_LOG[0]}'; echo '{FAILING_LOG[1]}' >&2; exit {FAILING_CODE}",
    "hang": "trap 'exit 143' TERM; sleep 3600 & wait",
    "stubborn": "trap '' TERM; sleep 3600 & wait",
}


class DockerBackend:
    def __init__(self, tmp_path: Path, engine: Engine) -> None:
        self.engine = engine
        self.tmp_path = tmp_path
        self.instance = f"contract-{secrets.token_hex(4)}"
        self.runs = 0
        self.last = ""  # the job id of the request last made
        self.leftover = ""  # the job id of the crashed MIS's

    def _settings(self, url: str) -> Settings:
        docker = {"url": url, "instance": self.instance, "pull": "never", "stop_grace_seconds": 1}
        return settings(backend="docker", map={"image": MAP_IMAGE}, docker=docker)

    def backend(self, *, startable: bool = True) -> JobBackend:
        """Unstartable: docker.url names a socket nothing listens on."""
        url = self.engine.url if startable else f"unix://{self.tmp_path / 'no-engine.sock'}"
        return bootstrap.docker_backend(self._settings(url))

    def request(
        self, behaviour: Behaviour, inputs: Mapping[str, bytes] | None = None
    ) -> JobRequest:
        self.runs += 1
        ws = workspace(self.tmp_path / f"run-{self.runs}")
        put(Path(ws.input_dir), inputs or {})
        spec = MapSpec(image=MAP_IMAGE, command=("/bin/sh", "-c", SCRIPTS[behaviour]))
        request = JobRequest(job_id_for(f"{self.instance} {self.runs}"), spec, ws)
        self.last = request.job_id
        return request

    def output(self, request: JobRequest) -> dict[str, bytes]:
        return tree(Path(request.workspace.output_dir))

    def _ours(self) -> list[dict[str, Any]]:
        """This harness's containers, in any state."""
        return [
            c
            for c in self.engine.containers()
            if (c.get("Labels") or {}).get(LABEL_INSTANCE) == self.instance
        ]

    def _states(self) -> dict[str, str]:
        """Their states ("running", "exited", ...) by job id."""
        return {c["Labels"][LABEL_JOB_ID]: c["State"] for c in self._ours()}

    def started(self) -> bool:
        return self._states().get(self.last) == "running"

    def running(self) -> bool:
        return self.started()

    async def leave_job(self) -> None:
        """The container a MIS made before it died, as it made it (its labels among it)."""
        request = self.request("hang")
        self.leftover = request.job_id
        options = bootstrap.container_options(self._settings(self.engine.url))
        body = build_container(request, options)

        def create_and_start() -> None:
            with self.engine.client() as client:
                made = client.post(
                    "/containers/create",
                    params={"name": container_name(options, request)},
                    json=body,
                )
                made.raise_for_status()
                client.post(f"/containers/{made.json()['Id']}/start").raise_for_status()

        await anyio.to_thread.run_sync(create_and_start)

    def left_running(self) -> bool:
        return self._states().get(self.leftover) == "running"

    def close(self) -> None:
        """Remove what a failing test left of this harness's containers."""
        leftovers = self._ours()
        with self.engine.client() as client:
            for container in leftovers:
                client.delete(f"/containers/{container['Id']}", params={"force": 1})
