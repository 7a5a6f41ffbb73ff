"""Each port's implementations under one face, so one contract test runs over all of them.

The fakes (tests/fakes.py) stand in for the real adapters in the core's tests; the contract
tests hold them to what the real ones do, so a core test cannot pass on a fake's whim."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import ClassVar, Literal, Protocol

import anyio

from mis_adapters.process.backend import ProcessJobBackend
from mis_adapters.storage.layout import RUN_RECORD
from mis_adapters.storage.readiness import prepare_payload_folder
from mis_core.errors import BackendUnavailable, PayloadTooLarge
from mis_core.model import JobOutcome, JobRequest, MapSpec, Workspace, job_id_for
from mis_core.ports import JobBackend, Storage
from tests.adapters.process_jobs import workspace
from tests.built import local_storage, process_options
from tests.fakes import FakeJobBackend, FakeStorage
from tests.harness.unavailable import require_root, require_tool, unavailable
from tests.processes import is_alive
from tests.storage import leave_workspace

# succeed: copy the input into the output; fail: log these lines and exit with this code;
# hang: run until stopped; stubborn: the same, ignoring the polite stop (SIGTERM)
Behaviour = Literal["succeed", "fail", "hang", "stubborn"]
FAILING_CODE = 3
FAILING_LOG = ("loading model", "error: no GPU")


def tree(folder: Path) -> dict[str, bytes]:
    """What a real folder holds, as the fakes' MemoryDisk.read says it."""
    found = {}
    for path in folder.rglob("*"):
        name = path.relative_to(folder).as_posix()
        if not path.is_dir():
            found[name] = path.read_bytes()
        elif not any(path.iterdir()):
            found[f"{name}/"] = b""
    return found


def put(folder: Path, files: Mapping[str, bytes]) -> None:
    """Write `files` (folders too, their names ending in '/') into a real folder."""
    for name, data in files.items():
        path = folder / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)


class StorageUnderTest(Protocol):
    storage: Storage

    def exists(self, workspace: Workspace) -> bool:
        """Whether anything of the workspace is there (until it is deleted)."""
        ...

    def input(self, workspace: Workspace) -> dict[str, bytes]:
        """What its input folder holds, as the MAP would read it."""
        ...

    def write_output(self, workspace: Workspace, files: Mapping[str, bytes]) -> None:
        """Write into its output folder, as the MAP would (a name ending in '/': a folder)."""
        ...

    async def leave(self, job_id: str) -> Workspace:
        """A workspace made by an earlier MIS that is gone without deleting it."""
        ...

    def unready(self) -> None:
        """Leave the volume unable to take a workspace now."""
        ...

    def limit(self, setting: str, value: int) -> None:
        """Before any workspace is made: the volume refuses to unpack past `value` of the
        server setting `setting` (max_extracted_bytes, max_entries)."""
        ...

    def undeletable(self, workspace: Workspace) -> AbstractContextManager[None]:
        """While held, the workspace cannot be deleted now; afterwards it can again."""
        ...


class LocalVolume:
    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "payload"
        prepare_payload_folder(self.root)  # as MIS's start-up does
        self.storage: Storage = local_storage(self.root)

    def exists(self, workspace: Workspace) -> bool:
        return Path(workspace.root).exists()

    def input(self, workspace: Workspace) -> dict[str, bytes]:
        return tree(Path(workspace.input_dir))

    def write_output(self, workspace: Workspace, files: Mapping[str, bytes]) -> None:
        put(Path(workspace.output_dir), files)

    async def leave(self, job_id: str) -> Workspace:
        leave_workspace(self.root, job_id)
        return Workspace(str(self.root), job_id)

    def unready(self) -> None:
        shutil.rmtree(self.root)  # a volume unmounted, a folder deleted

    def limit(self, setting: str, value: int) -> None:
        self.storage = local_storage(self.root, **{setting: value})

    @contextmanager
    def undeletable(self, workspace: Workspace) -> Iterator[None]:
        """A file MIS may not remove: root may remove any but an immutable one (as MIS's own
        unprivileged user, tests/containment deletes all it may)."""
        require_root("an immutable file (chattr +i)")
        chattr = require_tool("chattr")
        locked = Path(workspace.output_dir) / "locked.bin"
        locked.write_bytes(b"written by the MAP")
        made = subprocess.run([chattr, "+i", str(locked)], capture_output=True, text=True)
        if made.returncode != 0:
            unavailable(f"chattr +i does not work here: {made.stderr.strip()}")
        try:
            yield
        finally:
            subprocess.run([chattr, "-i", str(locked)], check=True)


class FakeVolume:
    def __init__(self, tmp_path: Path) -> None:
        self.fake = FakeStorage([])
        self.storage: Storage = self.fake  # mypy holds the fake to the port here

    def exists(self, workspace: Workspace) -> bool:
        return self.fake.disk.holds(workspace.root)

    def input(self, workspace: Workspace) -> dict[str, bytes]:
        return self.fake.disk.read(workspace.input_dir)

    def write_output(self, workspace: Workspace, files: Mapping[str, bytes]) -> None:
        self.fake.disk.write(workspace.output_dir, files)

    async def leave(self, job_id: str) -> Workspace:
        return await FakeStorage([], disk=self.fake.disk).create(job_id)

    def unready(self) -> None:
        self.fake.unready = BackendUnavailable("The payload folder does not exist.")

    def limit(self, setting: str, value: int) -> None:
        self.fake.fail_at, self.fake.error = "extract", PayloadTooLarge(f"over {setting}")

    @contextmanager
    def undeletable(self, workspace: Workspace) -> Iterator[None]:
        self.fake.fail_delete = True
        try:
            yield
        finally:
            self.fake.fail_delete = False


class BackendUnderTest(Protocol):
    def backend(self, *, startable: bool = True) -> JobBackend:
        """The backend; with `startable` false, one that cannot start jobs now (its MAP's
        program missing, its API server or container engine out of reach)."""
        ...

    def request(
        self, behaviour: Behaviour, inputs: Mapping[str, bytes] | None = None
    ) -> JobRequest:
        """A request, in a new workspace holding `inputs`, for a MAP that behaves so (for the
        backend last made)."""
        ...

    def output(self, request: JobRequest) -> dict[str, bytes]:
        """What the request's MAP wrote to its output folder."""
        ...

    def started(self) -> bool:
        """Whether the MAP that runs until stopped has started."""
        ...

    def running(self) -> bool:
        """Whether that MAP still runs."""
        ...

    async def leave_job(self) -> None:
        """A job that an earlier MIS started, left running when it died; once it runs."""
        ...

    def left_running(self) -> bool:
        """Whether that job still runs."""
        ...

    def close(self) -> None:
        """Stop whatever the test left running."""
        ...


# MAPs as small Python programs, one per behaviour (the hanging ones write their pid first,
# to the file their one argument names): the process backend's, and the Kubernetes double's
# kubelet's, which runs a Job's container command as a local process.
_HANG = "import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(3600)"
SCRIPTS: dict[Behaviour, str] = {
    "succeed": "import os, shutil\n"
    "shutil.copytree(os.environ['MONAI_INPUTPATH'], os.environ['MONAI_OUTPUTPATH'],"
    " dirs_exist_ok=True)",
    "fail": "import sys\n"
    f"print({FAILING_LOG[0]!r})\n"
    f"print({FAILING_LOG[1]!r}, file=sys.stderr)\n"
    f"raise SystemExit({FAILING_CODE})",
    "hang": _HANG,
    "stubborn": f"import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n{_HANG}",
}


def python_map(behaviour: Behaviour, pidfile: Path) -> tuple[str, ...]:
    """The command of a MAP that behaves so; a hanging one writes its pid to `pidfile`."""
    return (sys.executable, "-c", SCRIPTS[behaviour], str(pidfile))


def pid_written(pidfile: Path) -> bool:
    """Whether the hanging MAP that writes `pidfile` has started."""
    return pidfile.exists() and pidfile.read_text() != ""


def pid_alive(pidfile: Path) -> bool:
    """Whether that MAP still runs."""
    return is_alive(int(pidfile.read_text()), grace=0)


class PythonMaps:
    """What a backend whose MAPs are `python_map`s, run as local processes (directly, or by
    the API double's kubelet), tells the contract: a workspace's output, and the hanging
    MAP's pid in `pidfile`."""

    pidfile: Path

    def output(self, request: JobRequest) -> dict[str, bytes]:
        return tree(Path(request.workspace.output_dir))

    def started(self) -> bool:
        return pid_written(self.pidfile)

    def running(self) -> bool:
        return pid_alive(self.pidfile)


class ProcessBackend(PythonMaps):
    """The real process backend, running small Python MAPs as local processes."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.root = tmp_path / "payload"  # where it sweeps
        self.pidfile = tmp_path / "pid"
        self.runs = 0
        self.leftover: subprocess.Popen[bytes] | None = None

    def _spec(self, behaviour: Behaviour) -> MapSpec:
        return MapSpec(command=python_map(behaviour, self.pidfile))

    def backend(self, *, startable: bool = True) -> JobBackend:
        spec = self._spec("succeed") if startable else MapSpec(command=("/nonexistent/map",))
        return ProcessJobBackend(
            spec, process_options(kill_grace_seconds=0.5, payload_root=self.root)
        )

    def request(
        self, behaviour: Behaviour, inputs: Mapping[str, bytes] | None = None
    ) -> JobRequest:
        self.runs += 1
        ws = workspace(self.tmp_path / f"run-{self.runs}")
        put(Path(ws.input_dir), inputs or {})
        return JobRequest(self._job_id(f"run-{self.runs}"), self._spec(behaviour), ws)

    def _job_id(self, name: str) -> str:
        """An id of this test's own: the backend kills by it what carries it, and other test
        runs may be under way beside this one."""
        return job_id_for(f"{self.tmp_path} {name}")

    async def leave_job(self) -> None:
        await anyio.to_thread.run_sync(self._leave_job)

    def _leave_job(self) -> None:
        job_id = self._job_id("left by a crashed MIS")
        folder = leave_workspace(self.root, job_id)
        self.leftover = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(3600)"],
            env={**os.environ, "MONAI_JOBID": job_id},  # as every MAP it starts has
        )
        (folder / RUN_RECORD).write_text(f"{self.leftover.pid} {job_id}")

    def left_running(self) -> bool:
        return self.leftover is not None and is_alive(self.leftover.pid, grace=0)

    def close(self) -> None:
        if self.leftover is not None:
            self.leftover.kill()
            self.leftover.wait()


class FakeBackend:
    OUTCOMES: ClassVar[dict[Behaviour, JobOutcome | None]] = {
        "succeed": JobOutcome(True, exit_code=0),
        "fail": JobOutcome(False, f"exited with code {FAILING_CODE}", FAILING_CODE, FAILING_LOG),
        "hang": None,
        "stubborn": None,
    }

    def __init__(self, tmp_path: Path) -> None:
        self.fake = FakeJobBackend([])
        self.runs = 0

    def backend(self, *, startable: bool = True) -> JobBackend:
        self.fake = FakeJobBackend([])
        if not startable:
            self.fake.unready = BackendUnavailable("The MAP's program was not found.")
        return self.fake

    def request(
        self, behaviour: Behaviour, inputs: Mapping[str, bytes] | None = None
    ) -> JobRequest:
        self.runs += 1
        self.fake.outcome = self.OUTCOMES[behaviour]  # the fake's MAP is the backend's
        ws = Workspace(FakeStorage.ROOT, job_id_for(f"contract-{self.runs}"))
        self.fake.disk.write(ws.input_dir, inputs or {})
        return JobRequest(ws.name, MapSpec(), ws)

    def output(self, request: JobRequest) -> dict[str, bytes]:
        return self.fake.disk.read(request.workspace.output_dir)

    def started(self) -> bool:
        return self.fake.started.is_set()

    def running(self) -> bool:
        return self.started() and "terminate" not in self.fake.journal

    async def leave_job(self) -> None:
        self.fake.leftovers.add(job_id_for("left by a crashed MIS"))

    def left_running(self) -> bool:
        return bool(self.fake.leftovers)

    def close(self) -> None:
        pass
