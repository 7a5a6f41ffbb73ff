"""The embedded default backend: the MAP's command as local processes, one run per request.

Each run is a supervisor process (supervisor.py) in a new session, which starts the MAP —
inside bubblewrap's sandbox when it is on (sandbox.py) — with a clean environment, no
inherited file descriptors, the memory limit and the request's own working folder
(launch.py, limits.py). The supervisor is a child subreaper, so every process the MAP starts
stays below it, whatever it does to leave its process group; when the MAP exits, or MIS
stops the job (SIGTERM, a grace period, SIGKILL), it kills them all before it exits itself.
ending.py tells when the run is over and what MIS answers (report.py reads how the MAP ended).

Without the sandbox the MAP runs as MIS's user and can kill its supervisor; MIS is a child
subreaper itself, so what the MAP started then becomes MIS's child, and when the run ends MIS
kills and reaps it (orphans.py).

If MIS dies, the supervisor's parent-death signal makes it kill everything (and the sandbox
ends with it by `--die-with-parent`). As a backstop the run is recorded in the workspace, and
the sweep at the next start kills any process still carrying that run's MONAI_JOBID.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

import anyio
from anyio.abc import Process
from loguru import logger

from mis_adapters.map_follow import MapLog
from mis_adapters.process import limits
from mis_adapters.process.ending import outcome, wait_for_the_end
from mis_adapters.process.exposure import Guard, ViewRefused
from mis_adapters.process.kills import kill_group, kill_marked
from mis_adapters.process.launch import (
    REPORT,
    absolute_words,
    basic_environment,
    map_run_environment,
    supervised,
)
from mis_adapters.process.options import ProcessOptions
from mis_adapters.process.orphans import become_subreaper, now_ticks, reap_orphans
from mis_adapters.process.report import Report, read_report
from mis_adapters.process.sandbox import bwrap_argv
from mis_adapters.process.view import View, map_view
from mis_adapters.storage.layout import RUN_FOLDER_MODE
from mis_adapters.storage.layout import RUN_RECORD as RECORD
from mis_adapters.storage.ownership import owner_alive
from mis_core.errors import BackendUnavailable
from mis_core.model import JobOutcome, JobProgress, JobRequest, MapSpec, Workspace

_MARGIN = 2.0  # beyond the grace, for the supervisor to kill and reap


class ProcessJobBackend:
    def __init__(
        self, spec: MapSpec, options: ProcessOptions, *, base_env: Mapping[str, str] | None = None
    ) -> None:
        """The secrets and the payload folder of `options`: what the sandbox never shows a
        MAP; its `read_only_paths`: folders it shows besides the MAP's program. `base_env`:
        the environment the MAP's basics come from (default: MIS's own)."""
        self.options = options
        self.kill_grace_seconds = options.kill_grace_seconds
        self.pids_limit = options.pids_limit
        self.map_log_bytes = options.map_log_bytes
        self.spec = spec
        self.payload_root = options.payload_root
        self.basics = basic_environment(os.environ if base_env is None else base_env)
        self.sandbox = options.sandbox
        self.guard = Guard.of(str(options.payload_root), options.secrets)
        self.read_only_paths = tuple(os.path.abspath(p) for p in options.read_only_paths)
        self.cwd = os.getcwd()
        self._view: View | ViewRefused | None = None
        self.supervisors: set[int] = set()  # live ones: never taken for a MAP's orphans
        self._spawning: anyio.Lock | None = None  # a supervisor is not yet in the set
        self._exiting: list[Process] = []  # supervisors that reported, not yet collected

    async def check(self) -> None:
        """Ready when the MAP's program can be found (a typo in map.command shows up here)
        and the sandbox can show it the files its command names."""
        program = [*self.spec.command, *self.spec.args][:1]
        if not program or shutil.which(program[0], path=self.basics.get("PATH")) is None:
            raise BackendUnavailable(
                "The MAP's program was not found; check map.command in the configuration."
            )
        try:
            self.view()
        except ViewRefused as exc:
            raise BackendUnavailable(str(exc)) from None

    def view(self) -> View | None:
        """What the MAP sees of the host's files in the sandbox (None without one), derived
        once; ViewRefused when it would show a payload folder or a secret."""
        if not self.sandbox.bwrap:
            return None
        if self._view is None:
            try:
                self._view = self._derive(self.spec)
            except ViewRefused as exc:
                self._view = exc
        if isinstance(self._view, ViewRefused):
            raise self._view
        return self._view

    async def sweep(self) -> int:
        """Kill what the runs of a crashed MIS left running (normally nothing: the
        supervisor kills everything when MIS dies). Run once as the service starts, which
        is when MIS becomes a child subreaper (not on construction: a test process that
        builds a backend should not start collecting orphans)."""
        become_subreaper()
        if not self.payload_root.is_dir():
            return 0
        killed = 0
        for record in self.payload_root.glob(Workspace.pattern(RECORD)):
            if owner_alive(record.parent):
                continue  # a live MIS's request (one sharing the payload folder): not ours
            try:
                _, job_id = record.read_text().split()
            except (OSError, ValueError):
                continue
            killed += 1 if kill_marked(job_id) else 0
        return killed

    async def close(self) -> None:
        await self._collect_exits()

    async def run(self, request: JobRequest, progress: JobProgress) -> JobOutcome:
        workspace = request.workspace
        words = absolute_words([*request.map.command, *request.map.args], self.cwd)
        argv = request.host_folders.substitute(words)
        env = map_run_environment(request, self.basics)
        if shutil.which(argv[0], path=env.get("PATH")) is None:
            raise BackendUnavailable(  # the configuration's fault, as /readyz says: 503
                f"The MAP's program {argv[0]} was not found; check map.command in the "
                "configuration."
            )
        try:
            view = self._view_for(request.map)
        except ViewRefused as exc:
            return JobOutcome(succeeded=False, reason=f"could not be started: {exc}")
        for folder in (workspace.work_dir, workspace.tmp_dir):
            os.mkdir(folder, RUN_FOLDER_MODE)
        report = Path(workspace.file(REPORT))
        command = self._command(request, argv, view, report)
        map_log = MapLog(max_bytes=self.map_log_bytes)
        await self._collect_exits()
        since = now_ticks()
        try:
            process = await self._start(command, env, workspace.work_dir)
        except OSError as exc:
            return JobOutcome(
                succeeded=False, reason=f"could not be started: {exc.strerror} ({argv[0]})"
            )
        logger.info("MAP supervisor {} started (sandbox: {})", process.pid, self.sandbox.name)
        Path(workspace.file(RECORD)).write_text(f"{process.pid} {request.job_id}")
        ended: Report | None = None
        sandboxed = bool(self.sandbox.bwrap)
        try:
            ended = await wait_for_the_end(process, map_log, report, sandboxed=sandboxed)
        finally:
            with anyio.CancelScope(shield=True):
                await self._terminate(process, request.job_id, report, reported=ended is not None)
                if not sandboxed:
                    # In the sandbox the MAP cannot see its supervisor, let alone kill it
                    # (own PID and user namespaces), so nothing of it can become MIS's:
                    # the look through MIS's children (a few tenths of a ms) is skipped.
                    await self._reap_orphans(since)
        tail = tuple(map_log.tail)
        return outcome(request, ended, process.returncode, tail, sandboxed=sandboxed)

    def _command(
        self, request: JobRequest, argv: list[str], view: View | None, report: Path
    ) -> list[str]:
        """The run's command line: the supervisor, then the sandbox's (when it is on), then
        the MAP's own."""
        memory = limits.memory_limit(request.map.resources)
        sandbox = (
            bwrap_argv(
                self.sandbox,
                view,
                request.workspace,
                gpu=request.map.resources.gpu,
                shm_bytes=memory,
            )
            if view is not None
            else []
        )
        return supervised(
            [*sandbox, "--", *argv] if sandbox else argv,
            report=str(report),
            grace=self.kill_grace_seconds,
            memory=memory,
            processes=self.pids_limit,
            cwd=request.workspace.work_dir,
            sandboxed=bool(self.sandbox.bwrap),
            sandbox_args=max(len(sandbox) - 1, 0),  # bwrap's own, through a pipe: see supervisor.py
        )

    async def _start(self, command: list[str], env: dict[str, str], cwd: str) -> Process:
        """Start the supervisor in a session of its own, and count it among the live ones
        before any other run can look for orphans."""
        self._spawning = self._spawning or anyio.Lock()
        async with self._spawning:
            process = await anyio.open_process(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
            self.supervisors.add(process.pid)
        return process

    def _view_for(self, spec: MapSpec) -> View | None:
        """The configured MAP's view, or one for another MAP (tests run several)."""
        if spec == self.spec or not self.sandbox.bwrap:
            return self.view()
        return self._derive(spec)

    def _derive(self, spec: MapSpec) -> View:
        words = absolute_words([*spec.command, *spec.args], self.cwd)
        return map_view(
            words,
            self.basics.get("PATH"),
            guard=self.guard,
            read_only_paths=self.read_only_paths,
            home=os.environ.get("HOME"),
        )

    async def _terminate(
        self, process: Process, job_id: str, report: Path, *, reported: bool
    ) -> None:
        """Stop the run: SIGTERM to the supervisor, which passes it on and kills everything
        after the grace; if the supervisor itself does not finish, kill what is left. A
        supervisor that has reported is only exiting: it is collected later."""
        if reported and process.returncode is None:
            self._exiting.append(process)
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with anyio.move_on_after(self.kill_grace_seconds + _MARGIN):
                await process.wait()
        if process.returncode is None or read_report(report) is None:
            kill_group(process)
            kill_marked(job_id)
        await self._close(process)

    async def _collect_exits(self) -> None:
        """Wait for the supervisors that reported and were still exiting (long gone, as a
        rule: this runs before the next MAP starts, and as MIS stops)."""
        exiting, self._exiting = self._exiting, []
        for process in exiting:
            with anyio.move_on_after(_MARGIN):
                await process.wait()
            if process.returncode is None:
                kill_group(process)
            await self._close(process)

    async def _close(self, process: Process) -> None:
        await process.wait()
        await process.aclose()
        self.supervisors.discard(process.pid)

    async def _reap_orphans(self, since: int) -> None:
        """What a MAP that killed its supervisor left running became MIS's: kill it."""
        assert self._spawning is not None
        async with self._spawning:
            killed = await reap_orphans(since, set(self.supervisors), within=_MARGIN)
        if killed:
            logger.warning(
                "killed {} process(es) the MAP left after killing its supervisor", killed
            )
