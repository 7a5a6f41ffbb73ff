"""Each port's implementations under one face, so one contract test runs over all of them.

The fakes (tests/fakes.py) stand in for the real adapters in the core's tests; the contract
tests hold them to what the real ones do, so a core test cannot pass on a fake's whim."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Protocol

from mis_adapters.process.backend import ProcessJobBackend
from mis_core.model import JobOutcome, JobRequest, MapSpec, Workspace
from mis_core.ports import JobBackend, Storage
from tests.adapters.process_jobs import workspace
from tests.built import local_storage, process_options
from tests.fakes import FakeJobBackend, FakeStorage
from tests.processes import is_alive

Behaviour = Literal["succeed", "fail", "hang"]
FAILING_CODE = 3


class StorageUnderTest(Protocol):
    storage: Storage

    def exists(self, workspace: Workspace) -> bool:
        """Whether the workspace is there (until it is deleted)."""
        ...


class LocalVolume:
    def __init__(self, tmp_path: Path) -> None:
        self.storage: Storage = local_storage(tmp_path / "payload")

    def exists(self, workspace: Workspace) -> bool:
        return Path(workspace.root).exists()


class FakeVolume:
    def __init__(self, tmp_path: Path) -> None:
        self.fake = FakeStorage([])
        self.storage: Storage = self.fake  # mypy holds the fake to the port here

    def exists(self, workspace: Workspace) -> bool:
        return workspace.name in self.fake.workspaces


class BackendUnderTest(Protocol):
    def backend(self, behaviour: Behaviour) -> tuple[JobBackend, JobRequest]:
        """A backend and a request for a MAP that succeeds, fails or runs until stopped."""
        ...

    def started(self) -> bool:
        """Whether the MAP that runs until stopped has started."""
        ...

    def running(self) -> bool:
        """Whether that MAP still runs."""
        ...


class ProcessBackend:
    """The real process backend, running small Python MAPs as local processes."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.pidfile = tmp_path / "pid"

    def backend(self, behaviour: Behaviour) -> tuple[JobBackend, JobRequest]:
        script = {
            "succeed": "pass",
            "fail": f"raise SystemExit({FAILING_CODE})",
            "hang": "import os, sys, time\n"
            "open(sys.argv[1], 'w').write(str(os.getpid()))\n"
            "time.sleep(3600)",
        }[behaviour]
        spec = MapSpec(command=(sys.executable, "-c", script, str(self.pidfile)))
        ws = workspace(self.tmp_path / "ws")
        backend = ProcessJobBackend(spec, process_options(kill_grace_seconds=0.5))
        return backend, JobRequest("req-contract", spec, ws)

    def started(self) -> bool:
        return self.pidfile.exists() and self.pidfile.read_text() != ""

    def running(self) -> bool:
        return is_alive(int(self.pidfile.read_text()), grace=0)


class FakeBackend:
    def __init__(self, tmp_path: Path) -> None:
        self.fake: FakeJobBackend | None = None

    def backend(self, behaviour: Behaviour) -> tuple[JobBackend, JobRequest]:
        outcome = {
            "succeed": JobOutcome(True),
            "fail": JobOutcome(False, f"exited with code {FAILING_CODE}", FAILING_CODE),
            "hang": None,
        }[behaviour]
        self.fake = FakeJobBackend([], outcome)
        return self.fake, JobRequest("req-contract", MapSpec(), Workspace("/ws", "req"))

    def started(self) -> bool:
        return self.fake is not None and self.fake.started.is_set()

    def running(self) -> bool:
        return self.fake is not None and "terminate" not in self.fake.journal
