"""The embedded default backend: the MAP's command as a local process group.

The command runs in a new session (its own process group), so terminating the job reaches
every process it started: SIGTERM to the group, SIGKILL after a grace period, and SIGKILL to
whatever is left of the group once the MAP itself has exited.

If MIS itself dies, the MAP dies with it (util-linux's `setpriv` arms a parent-death signal
before it execs the MAP; without `setpriv` this is skipped), and the group, recorded in the
workspace, is killed by the sweep when MIS next starts.
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
from mis_adapters.storage.ownership import owner_alive
from mis_core.errors import BackendUnavailable
from mis_core.model import JobOutcome, JobProgress, JobRequest, MapSpec, Workspace

RECORD = ".map-process"  # in the workspace: "<process group id> <MONAI_JOBID>"


class ProcessJobBackend:
    def __init__(
        self,
        spec: MapSpec,
        *,
        kill_grace_seconds: float = 5.0,
        log_tail_lines: int = 20,
        base_env: Mapping[str, str] | None = None,
        payload_root: Path | None = None,
    ) -> None:
        self.kill_grace_seconds = kill_grace_seconds
        self.log_tail_lines = log_tail_lines
        self.spec = spec
        self.payload_root = payload_root
        self.base_env = dict(os.environ if base_env is None else base_env)

    async def check(self) -> None:
        """Ready when the MAP's program can be found (a typo in map.command shows up here)."""
        program = [*self.spec.command, *self.spec.args][:1]
        if not program or shutil.which(program[0]) is None:
            raise BackendUnavailable(
                "The MAP's program was not found; check map.command in the configuration."
            )

    async def sweep(self) -> int:
        """Kill the process groups that MAPs of a crashed MIS left running."""
        if self.payload_root is None or not self.payload_root.is_dir():
            return 0
        killed = 0
        for record in self.payload_root.glob(Workspace.pattern(RECORD)):
            if owner_alive(record.parent):
                continue  # a live MIS's request (one sharing the payload folder): not ours
            try:
                pgid_text, job_id = record.read_text().split()
            except (OSError, ValueError):
                continue
            if _group_runs_job(int(pgid_text), job_id):
                _kill_group(int(pgid_text), signal.SIGKILL)
                killed += 1
        return killed

    async def close(self) -> None:
        return None

    async def run(self, request: JobRequest, progress: JobProgress) -> JobOutcome:
        argv = request.host_folders.substitute([*request.map.command, *request.map.args])
        env = self.environment(request)
        map_log = MapLog(self.log_tail_lines)
        if shutil.which(argv[0], path=env.get("PATH")) is None:
            raise BackendUnavailable(  # the configuration's fault, as /readyz says: 503
                f"The MAP's program {argv[0]} was not found; check map.command in the "
                "configuration."
            )
        setpriv = shutil.which("setpriv")
        launcher = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        try:
            process = await anyio.open_process(
                [*launcher, *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            return JobOutcome(
                succeeded=False, reason=f"could not be started: {exc.strerror} ({argv[0]})"
            )
        logger.info("MAP process {} started", process.pid)
        Path(request.workspace.file(RECORD)).write_text(f"{process.pid} {request.job_id}")
        try:
            async with anyio.create_task_group() as tg:
                log_read = anyio.Event()

                async def pump() -> None:
                    assert process.stdout is not None
                    try:
                        await map_log.pump(process.stdout)
                    finally:
                        log_read.set()

                tg.start_soon(pump)
                code = await process.wait()
                _kill_group(process.pid, signal.SIGKILL)  # strays the MAP left running
                with anyio.move_on_after(1):  # a stray that left the group may hold the pipe
                    await log_read.wait()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._terminate(process)
        return _outcome(code, tuple(map_log.tail))

    def environment(self, request: JobRequest) -> dict[str, str]:
        env = dict(self.base_env)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(request.map.resources.gpu))
        env.update(request.environment(request.host_folders))
        return env

    async def _terminate(self, process: Process) -> None:
        """Stop the whole group: SIGTERM, a grace period, then SIGKILL. Safe to call twice."""
        if process.returncode is None:
            _kill_group(process.pid, signal.SIGTERM)
            with anyio.move_on_after(self.kill_grace_seconds):
                await process.wait()
        _kill_group(process.pid, signal.SIGKILL)
        await process.wait()
        await process.aclose()


def _group_runs_job(pgid: int, job_id: str) -> bool:
    """Whether a live process in group `pgid` is the MAP of `job_id` (ids get reused)."""
    marker = f"MONAI_JOBID={job_id}".encode()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if os.getpgid(int(proc.name)) != pgid:
                continue
            if marker in (proc / "environ").read_bytes().split(b"\0"):
                return True
        except (OSError, ValueError):
            continue
    return False


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _outcome(code: int, tail: tuple[str, ...]) -> JobOutcome:
    if code == 0:
        return JobOutcome(succeeded=True, exit_code=0, log_tail=tail)
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else -code
        reason = f"was killed by signal {name}"
    else:
        reason = f"exited with code {code}"
    return JobOutcome(succeeded=False, reason=reason, exit_code=code, log_tail=tail)
