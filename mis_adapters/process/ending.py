"""How one run on the process backend ends, as MIS sees it: when it is over, and what
outcome MIS answers with.

Apart from the backend because neither needs its state: the end is told by the MAP's log
pipe, the supervisor's report and its exit, and the outcome by the report (or the
supervisor's own code) and the log's last lines.
"""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, Process

from mis_adapters.map_follow import MapLog
from mis_adapters.process import limits
from mis_adapters.process.report import Report, read_report
from mis_core.model import JobOutcome, JobRequest


async def wait_for_the_end(
    process: Process, map_log: MapLog, report: Path, *, sandboxed: bool
) -> Report | None:
    """The supervisor's report, and None when it ended without one (killed).

    In the sandbox the run is over once the MAP's log pipe has ended and the report is
    there: the supervisor closes its end only after it has reaped everything below it and
    written the report, which the MAP cannot see, so this returns then, while the
    supervisor's own exit takes ~0.6 ms more (left to the backend's `_collect_exits`). No task
    watches for that exit meanwhile: nothing in the sandbox outlives the supervisor (bwrap's
    `--die-with-parent`), so the pipe ends whenever it does, and a task to cancel at the
    end would cost the response's first byte ~0.2 ms. Without the sandbox the MAP runs as
    MIS's user: it could plant a report, end the pipe's stream and kill its supervisor,
    whose processes reach MIS only as the supervisor exits; so this waits for that exit,
    as it does whenever there is no report."""
    assert process.stdout is not None
    if sandboxed:
        await map_log.pump(process.stdout)
        if (finished := read_report(report)) is not None:
            return finished
        await process.wait()
        return read_report(report)
    log_read = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def pump(stdout: ByteReceiveStream) -> None:
            try:
                await map_log.pump(stdout)
            finally:
                log_read.set()

        tg.start_soon(pump, process.stdout)
        await process.wait()
        with anyio.move_on_after(1):  # a process that escaped may hold the pipe
            await log_read.wait()
        tg.cancel_scope.cancel()
    return read_report(report)


def outcome(
    request: JobRequest,
    ended: Report | None,
    returncode: int | None,
    tail: tuple[str, ...],
    *,
    sandboxed: bool,
) -> JobOutcome:
    """The run's outcome, from the report (or, without one, the supervisor's own code)."""
    if ended is not None:
        code, peak = ended.code, ended.peak_rss_kib
    else:  # the supervisor was killed: its own code (it has been waited for)
        assert returncode is not None
        code, peak = returncode, 0
    if sandboxed and code > 128 and _signal_name(code - 128):
        code = 128 - code  # bwrap's way of saying a signal ended the MAP
    if code == 0:
        return JobOutcome(succeeded=True, exit_code=0, log_tail=tail)
    resources = request.map.resources
    if limits.ran_out_of_memory(tail):
        reason = limits.memory_reason(resources, peak)
    elif code < 0:
        reason = f"was killed by signal {_signal_name(-code) or -code}"
    else:
        reason = f"exited with code {code}"
    return JobOutcome(succeeded=False, reason=reason, exit_code=code, log_tail=tail)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return ""
