"""The single-machine container backend: one container per request through the Docker Engine API.

For a workstation with Docker (or Podman's Docker-compatible service) and no Kubernetes. The
request's input folder is bind-mounted read-only at map.input_path and its output folder at
map.output_path; the MAP's log streams into MIS's log. The container is removed however the
job ends; containers left by a crashed MIS carry this installation's labels and are removed
at the next start.
"""

from __future__ import annotations

import contextlib
import signal
from typing import Any

import anyio
import attrs
from loguru import logger

from mis_adapters.docker.container import (
    build_container,
    container_name,
    instance_labels,
)
from mis_adapters.docker.engine import ContainerEngine, EngineError
from mis_adapters.docker.options import DockerOptions
from mis_adapters.map_follow import MapLog
from mis_core.errors import BackendUnavailable
from mis_core.model import JobOutcome, JobProgress, JobRequest

REMOVE_SECONDS = 60  # removal is shielded from cancellation, so it gets its own bound


class DockerJobBackend:
    def __init__(self, engine: ContainerEngine, options: DockerOptions) -> None:
        self.engine = engine
        self.options = options
        self.image = options.image  # map.image
        self.container = options.container  # what each request's container is made with
        self._image_problem = ""  # set while the image is missing or being pulled

    async def check(self) -> None:
        """Ready when the engine answers and the MAP image is there (or no warm-up judged it)."""
        await self.engine.ping()
        if self._image_problem:
            problem = self._image_problem
            raise BackendUnavailable(f"{problem[:1].upper()}{problem[1:]}.")

    async def warm_up(self, request: JobRequest) -> None:
        """Have the image before the first request, so its pull does not eat that request's time."""
        try:
            present = await self.engine.image(self.image) is not None
        except BackendUnavailable as exc:
            logger.error("{}", exc.message)
            return
        if self.options.pull == "never" or (self.options.pull == "missing" and present):
            self._image_problem = "" if present else _missing_message(self.image)
            return
        self._image_problem = f"the MAP image {self.image} is being pulled; try again shortly"
        logger.info("pulling the MAP image {}", self.image)
        try:
            await self.engine.pull(self.image)
        except (EngineError, BackendUnavailable) as exc:
            self._image_problem = _pull_message(self.image, exc)
            logger.error("{}", self._image_problem)
        else:
            self._image_problem = ""
            logger.info("pulled the MAP image {}", self.image)

    async def sweep(self) -> int:
        """Remove this installation's containers that a crashed MIS left behind.

        An engine that refuses is `BackendUnavailable`, as one that cannot be reached: MIS
        starts anyway, its log says so, and the next start sweeps again."""
        try:
            leftovers = await self.engine.containers(instance_labels(self.container))
            for container in leftovers:
                await self.engine.remove(container["Id"])
        except EngineError as exc:
            raise BackendUnavailable(f"Sweeping leftover containers failed: {exc}") from exc
        return len(leftovers)

    async def close(self) -> None:
        await self.engine.close()

    async def run(self, request: JobRequest, progress: JobProgress) -> JobOutcome:
        name = container_name(self.container, request)
        try:
            container = await self._create(name, build_container(request, self.container), progress)
        except EngineError as exc:
            return JobOutcome(succeeded=False, reason=f"could not be started: {exc.message}")
        finished = False
        try:
            try:
                await self.engine.start(container)
            except EngineError as exc:
                return JobOutcome(succeeded=False, reason=f"could not be started: {exc.message}")
            logger.info("MAP container {} started", name)
            map_log = MapLog(max_bytes=self.options.map_log_bytes)
            async with anyio.create_task_group() as tg:
                log_read = anyio.Event()

                async def pump() -> None:
                    try:
                        await map_log.pump(self.engine.follow_log(container))
                    except (EngineError, BackendUnavailable) as exc:
                        logger.warning("could not stream the MAP's log: {}", exc)
                    finally:
                        log_read.set()

                tg.start_soon(pump)
                code = await self.engine.wait(container)
                finished = True
                with anyio.move_on_after(1):
                    await log_read.wait()
                tg.cancel_scope.cancel()
            inspected = await self.engine.inspect(container)
            state = inspected.get("State") or {}
            if code < 0 and not state.get("Running"):
                # Podman 4's wait can answer -1 when the exit races it; the state has the code
                code = int(state.get("ExitCode", code))
            outcome = _outcome(code, state, tuple(map_log.tail), str(request.map.resources.memory))
            return attrs.evolve(outcome, image_id=str(inspected.get("Image") or ""))
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(REMOVE_SECONDS):
                await self._remove(container, stop_first=not finished)

    async def _create(self, name: str, body: dict[str, Any], progress: JobProgress) -> str:
        """Create the container; pull the image first when it is missing and pulling is allowed."""
        try:
            return await self.engine.create_container(name, body)
        except EngineError as exc:
            if exc.status != 404:
                raise
            if self.options.pull == "never":
                raise EngineError(exc.status, _missing_message(self.image)) from exc
        logger.info("the MAP image {} is missing; pulling it", self.image)
        progress.waiting_reason = f"the MAP image {self.image} was being pulled"
        try:
            await self.engine.pull(self.image)
        except EngineError as exc:
            raise EngineError(exc.status, _pull_message(self.image, exc)) from exc
        self._image_problem = ""
        return await self.engine.create_container(name, body)

    async def _remove(self, container: str, *, stop_first: bool) -> None:
        """Stop (SIGTERM, then SIGKILL after the grace period) if still running, then remove."""
        try:
            if stop_first:
                with contextlib.suppress(EngineError):  # removal kills what stopping could not
                    await self.engine.stop(container, self.options.stop_grace_seconds)
            await self.engine.remove(container)
        except (EngineError, BackendUnavailable) as exc:
            logger.error(
                "could not remove container {}: {}; the next start sweeps it", container, exc
            )
        else:
            logger.info("MAP container removed")


def _missing_message(image: str) -> str:
    return (
        f"the MAP image {image} is not in the container engine and docker.pull is never; "
        "load it (docker load or podman load), or allow pulling"
    )


def _pull_message(image: str, exc: EngineError | BackendUnavailable) -> str:
    return (
        f"the MAP image {image} is not in the container engine and could not be pulled "
        f"({exc.message}); check the image name and the engine's registry access"
    )


def _outcome(code: int, state: dict[str, Any], tail: tuple[str, ...], memory: str) -> JobOutcome:
    if code == 0:
        return JobOutcome(succeeded=True, exit_code=0, log_tail=tail)
    if state.get("OOMKilled"):
        reason = (
            f"was OOMKilled: it used more memory than its limit of {memory} (map.resources.memory)"
        )
    elif code == 128 + signal.SIGKILL:
        # Engines on cgroup v1 do not always set OOMKilled; SIGKILL that MIS did not send
        # is, in practice, the kernel's OOM killer.
        reason = (
            f"was killed with SIGKILL (exit code {code}), most likely because it used more "
            f"memory than its limit of {memory} (map.resources.memory)"
        )
    else:
        reason = f"exited with code {code}"
    return JobOutcome(succeeded=False, reason=reason, exit_code=code, log_tail=tail)
