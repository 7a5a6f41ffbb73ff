"""The docker backend's decisions against a scripted engine, for what a real one rarely does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from mis_adapters.docker.backend import DockerJobBackend
from mis_adapters.docker.container import ContainerOptions
from mis_adapters.docker.engine import EngineError
from mis_core.model import JobProgress, JobRequest, MapSpec, Workspace

pytestmark = pytest.mark.anyio


class ScriptedEngine:
    """Answers like an engine would, with the exit status and state given; records calls."""

    def __init__(self, wait_code: int, state: dict[str, Any], start_error: str = "") -> None:
        self.wait_code = wait_code
        self.state = state
        self.start_error = start_error
        self.calls: list[str] = []

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
        return {"State": self.state}

    async def follow_log(self, container: str) -> AsyncIterator[bytes]:
        yield b"working\n"

    async def stop(self, container: str, grace_seconds: float) -> None:
        self.calls.append("stop")
        raise EngineError(304, "")  # it never ran

    async def remove(self, container: str) -> None:
        self.calls.append("remove")


def request() -> JobRequest:
    workspace = Workspace("/p", "r")
    return JobRequest("r", MapSpec(image="map:1", command=("run",)), workspace)


async def run(engine: ScriptedEngine) -> Any:
    backend = DockerJobBackend(engine, "map:1", ContainerOptions())  # type: ignore[arg-type]
    return await backend.run(request(), JobProgress())


async def test_a_wait_that_answers_minus_one_is_settled_by_the_containers_state() -> None:
    engine = ScriptedEngine(-1, {"Running": False, "Status": "exited", "ExitCode": 0})
    outcome = await run(engine)
    assert outcome.succeeded
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
