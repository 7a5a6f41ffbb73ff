"""The docker backend's decisions against a scripted engine, for what a real one rarely does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from loguru import logger

from mis_adapters.docker.engine import ContainerEngine, EngineError
from mis_adapters.map_follow import LOG_TAIL_LINES, MAX_LINE
from mis_app import bootstrap
from mis_core.errors import BackendUnavailable
from mis_core.model import JobProgress, JobRequest, MapSpec, Workspace
from tests.built import settings
from tests.fakes import FakeStorage

pytestmark = pytest.mark.anyio


class ScriptedEngine(ContainerEngine):
    """An engine that answers with the exit status, state and log given; records calls.

    It implements the backend's ContainerEngine protocol (mypy checks it against it), not
    the HTTP client.
    """

    def __init__(
        self,
        wait_code: int,
        state: dict[str, Any],
        start_error: str = "",
        log: tuple[bytes, ...] = (b"working\n",),
    ) -> None:
        self.wait_code = wait_code
        self.state = state
        self.start_error = start_error
        self.log = log
        self.calls: list[str] = []

    async def close(self) -> None:
        self.calls.append("close")

    async def ping(self) -> None:
        self.calls.append("ping")

    async def image(self, name: str) -> dict[str, Any] | None:
        return {"Id": "sha256:1"}

    async def pull(self, name: str) -> None:
        self.calls.append("pull")

    async def create_container(self, name: str, body: dict[str, Any]) -> str:
        self.calls.append("create")
        return "c1"

    async def start(self, container: str) -> None:
        self.calls.append("start")
        if self.start_error:
            raise EngineError(500, self.start_error)

    async def wait(self, container: str) -> int:
        self.calls.append("wait")
        return self.wait_code

    async def inspect(self, container: str) -> dict[str, Any]:
        return {"State": self.state, "Image": IMAGE_ID}

    async def stop(self, container: str, grace_seconds: float) -> None:
        self.calls.append("stop")
        raise EngineError(304, "")  # it never ran

    async def remove(self, container: str) -> None:
        self.calls.append("remove")

    async def containers(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        return []

    async def follow_log(self, container: str) -> AsyncIterator[bytes]:
        for chunk in self.log:
            yield chunk


IMAGE_ID = "sha256:" + "5e" * 32


def request() -> JobRequest:
    workspace = Workspace("/p", "r")
    return JobRequest("r", MapSpec(image="map:1", command=("run",)), workspace)


async def run(engine: ScriptedEngine) -> Any:
    configured = settings(backend="docker", map={"image": "map:1"})
    backend = bootstrap.docker_backend(configured, engine)
    return await backend.run(request(), JobProgress())


async def test_a_wait_that_answers_minus_one_is_settled_by_the_containers_state() -> None:
    engine = ScriptedEngine(-1, {"Running": False, "Status": "exited", "ExitCode": 0})
    outcome = await run(engine)
    assert outcome.succeeded
    assert outcome.image_id == IMAGE_ID  # the image as it ran, for the audit record
    assert outcome.log_tail == ("working",)
    assert engine.calls[-1] == "remove"


async def test_exit_137_without_oomkilled_is_blamed_on_memory_and_oomkilled_is_named() -> None:
    guessed = await run(ScriptedEngine(137, {"Running": False, "ExitCode": 137}))
    assert "most likely because it used more memory than its limit of 8Gi" in guessed.reason
    named = await run(ScriptedEngine(137, {"Running": False, "ExitCode": 137, "OOMKilled": True}))
    assert named.reason.startswith("was OOMKilled")


async def test_a_container_that_cannot_start_is_still_removed() -> None:
    engine = ScriptedEngine(0, {}, start_error="executable file not found")
    outcome = await run(engine)
    assert not outcome.succeeded
    assert outcome.reason == "could not be started: executable file not found"
    assert engine.calls == ["create", "start", "stop", "remove"]


async def test_a_huge_line_without_a_newline_is_logged_in_pieces() -> None:
    """The same MAP-log follower as the other backends: lines are cut at MAX_LINE."""
    huge = b"x" * 200_000
    engine = ScriptedEngine(
        3, {"Running": False, "ExitCode": 3}, log=(b"start\n", huge[:70_000], huge[70_000:])
    )
    outcome = await run(engine)
    assert len(outcome.log_tail) == LOG_TAIL_LINES  # the last pieces of the line, the last short
    assert {len(line) for line in outcome.log_tail[:-1]} == {MAX_LINE}
    assert huge.decode().endswith("".join(outcome.log_tail))


class RefusingEngine(ScriptedEngine):
    """An engine that answers, but refuses to list (`refuses`: "list") or to remove ("remove")
    the leftover containers a sweep finds."""

    def __init__(self, refuses: str) -> None:
        super().__init__(0, {})
        self.refuses = refuses

    async def containers(self, labels: dict[str, str]) -> list[dict[str, Any]]:
        if self.refuses == "list":
            raise EngineError(500, "the container store is locked")
        return [{"Id": "left-1"}]

    async def remove(self, container: str) -> None:
        await super().remove(container)
        raise EngineError(409, f"removal of container {container} is already in progress")


@pytest.mark.parametrize("refuses", ["list", "remove"])
async def test_a_sweep_the_engine_refuses_is_backend_unavailable_and_mis_starts(
    refuses: str,
) -> None:
    """As with an engine that cannot be reached (or the Kubernetes sweep's API): the service
    starts, serving, and its log says why the leftovers are still there."""
    configured = settings(backend="docker", map={"image": "map:1"})
    backend = bootstrap.docker_backend(configured, RefusingEngine(refuses))
    with pytest.raises(BackendUnavailable, match="Sweeping leftover containers failed: "):
        await backend.sweep()
    journal: list[str] = []
    errors: list[str] = []
    sink = logger.add(lambda message: errors.append(message.record["message"]), level="ERROR")
    service = bootstrap.build_service(configured, jobs=backend, storage=FakeStorage(journal))
    try:
        async with service.running():
            assert service.serving
    finally:
        logger.remove(sink)
    assert journal == ["sweep storage"]  # the workspaces are swept all the same
    assert any(
        line.startswith("could not sweep leftover jobs: Sweeping leftover containers failed")
        for line in errors
    ), errors
