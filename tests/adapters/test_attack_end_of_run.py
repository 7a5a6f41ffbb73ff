"""Attacks on the process backend's end of run: the log pipe's end plus a complete report
is taken as the end, without waiting for the supervisor's exit.

Unsandboxed MAPs run as MIS's user (root here), so they can reach the workspace's own files
(the parent of MONAI_OUTPUTPATH) and kill their supervisor. MIS is made a child subreaper as
the service makes it (sweep), so that its orphan reaping is in play as in production.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from mis_adapters.map_follow import LOG_TAIL_LINES
from mis_adapters.process import ending as ending_module
from mis_adapters.process import report as report_module
from mis_adapters.process import sandbox
from mis_adapters.process.backend import ProcessJobBackend
from mis_adapters.process.launch import REPORT
from mis_adapters.process.orphans import become_subreaper
from mis_core.model import JobOutcome, JobProgress, JobRequest, MapSpec, Workspace
from tests.adapters.process_jobs import spec, supervisor_of, workspace
from tests.built import process_options
from tests.containment.probes import require_bubblewrap
from tests.harness.wait import await_until, settled, wait_until
from tests.processes import is_alive

pytestmark = pytest.mark.anyio

# The server runs on uvloop (uvicorn's loop="auto", uvloop is a dependency), whose
# subprocess "pipes" are socketpairs; plain asyncio's are pipes.
LOOPS = pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ],
)
FORGED = '{"exit_code": 0, "signal": 0, "peak_rss_kib": 0}\n'


@pytest.fixture(autouse=True)
def subreaper() -> Iterator[None]:
    """MIS a child subreaper, as ProcessJobBackend.sweep makes it at start-up; afterwards,
    what a test left as this process's children is killed and reaped by pid, so that no
    test sees another's leftovers."""
    assert become_subreaper()
    before = set(children())
    yield
    for pid in set(children()) - before:
        if os.getsid(0) != session_of(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitid(os.P_PID, pid, os.WEXITED)


def children() -> list[int]:
    found = []
    for tid in os.listdir(f"/proc/{os.getpid()}/task"):
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{os.getpid()}/task/{tid}/children").read_text()
            found += [int(pid) for pid in text.split()]
    return found


def session_of(pid: int) -> int:
    try:
        return os.getsid(pid)
    except OSError:
        return -1


def sh(script: str, *args: str) -> MapSpec:
    return MapSpec(command=("/bin/sh", "-c", script, "map", *args), timeout_seconds=30)


def py(script: str, *args: str) -> MapSpec:
    return MapSpec(command=(sys.executable, "-c", script, *args), timeout_seconds=30)


async def run(backend: ProcessJobBackend, map_spec: MapSpec, ws: Workspace) -> JobOutcome:
    """One request per workspace: its own request id, so its own MONAI_JOBID."""
    job_id = "req-" + Path(ws.payload_dir).name
    return await backend.run(JobRequest(job_id, map_spec, ws), JobProgress())


def pids(path: Path, count: int) -> list[int]:
    """The pids written to `path`, once there are `count` of them (within 5 s)."""
    wait_until(lambda: len(words_of(path)) >= count, 5, f"{path} to get {count} pids")
    return [int(word) for word in words_of(path)]


def words_of(path: Path) -> list[str]:
    """The words in `path`; none while it does not exist."""
    try:
        return path.read_text().split()
    except OSError:
        return []


def kill_all(found: list[int]) -> None:
    for pid in found:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def describe(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return f"{pid} gone"
    return f"{pid} state={stat[0]} ppid={stat[1]} cmd={cmd!r}"


def my_leftovers(spare: set[int] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """This process's children, zombies included, that are not of its own session: what a
    MAP left that MIS neither killed nor reaped (a supervisor is reaped when collected).

    Polled until there are none, for SIGKILLs already sent to land; what is still there
    after a few seconds is left."""

    def leftovers() -> list[str]:
        mine = [pid for pid in children() if session_of(pid) != os.getsid(0) and pid not in spare]
        return [describe(pid) for pid in mine]

    return settled(leftovers, lambda found: found == [], timeout=3)


# 1. A MAP that closes its stdout/stderr early and keeps running -----------------------------


@LOOPS
async def test_a_map_that_closes_its_output_early_is_still_waited_for(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    pidfile = tmp_path / "pid"
    early = sh('echo $$ > "$1"; echo bye; exec >&- 2>&-; sleep 1; exit 4', str(pidfile))
    started = time.monotonic()
    with anyio.fail_after(20):
        outcome = await run(ProcessJobBackend(early, process_options()), early, ws)
    assert time.monotonic() - started >= 1
    assert outcome.exit_code == 4
    assert outcome.log_tail == ("bye",)
    assert not is_alive(pids(pidfile, 1)[0], grace=0)


# 2. A MAP that forks a daemon holding the log pipe ----------------------------------------


@LOOPS
async def test_a_daemon_holding_the_pipe_does_not_outlive_the_run(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    pidfile = tmp_path / "pid"
    daemon = sh(
        "(setsid sh -c 'while :; do echo tick; sleep 0.2; done' & echo $! > \"$1\") ; echo done",
        str(pidfile),
    )
    backend = ProcessJobBackend(daemon, process_options(kill_grace_seconds=0.5))
    started = time.monotonic()
    with anyio.fail_after(20):
        outcome = await run(backend, daemon, ws)
    found = pids(pidfile, 1)
    try:
        assert outcome.succeeded, outcome
        assert time.monotonic() - started < 5
        assert not is_alive(found[0], grace=0)
    finally:
        kill_all(found)
        await backend.close()


# 3. A forged report (unsandboxed: the workspace is the output folder's parent) -----------------


@LOOPS
async def test_a_report_planted_first_is_not_overwritten_and_costs_no_traceback(
    tmp_path: Path,
) -> None:
    """The supervisor's O_EXCL refuses a file put at the report's path; it says so in one
    line (the client reads the log's tail), not with a traceback naming MIS's paths. What
    the planted report says is the unsandboxed MAP's own word, as its outputs are."""
    ws = workspace(tmp_path)
    liar = sh(f"printf '%s' '{FORGED}' > \"$MONAI_OUTPUTPATH/../{REPORT}\"; echo failing; exit 5")
    outcome = await run(ProcessJobBackend(liar, process_options()), liar, ws)
    assert outcome.log_tail[-1] == "the MAP's supervisor could not write its report: File exists"
    assert not any("Traceback" in line or ws.payload_dir in line for line in outcome.log_tail)


# 4. A FIFO (or a link to one) at the report path: MIS's event loop blocks in open() ---------


@LOOPS
async def test_a_fifo_at_the_report_path_does_not_block_the_event_loop(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    fifo = Path(ws.file(REPORT))
    fifo_map = sh(f'mkfifo "$MONAI_OUTPUTPATH/../{REPORT}"')

    stop = threading.Event()

    def unblock() -> None:  # every 3 s, a writer for whoever waits to read the FIFO
        while not stop.wait(3):
            with contextlib.suppress(OSError):  # ENXIO: nobody waits on it now
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    threading.Thread(target=unblock, daemon=True).start()
    gaps: list[float] = []

    async def heartbeat() -> None:
        last = time.monotonic()
        while True:
            await anyio.sleep(0.05)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat)
        try:
            outcome = await run(ProcessJobBackend(fifo_map, process_options()), fifo_map, ws)
        finally:
            stop.set()
        tg.cancel_scope.cancel()
    assert outcome.succeeded  # the MAP exited 0; a FIFO is no report: the supervisor's code
    assert max(gaps, default=0) < 1.0, f"the event loop stood still for {max(gaps):.1f} s"


# 5. A link at the report path: MIS reads whatever it points at, whole ------------------------


@LOOPS
@pytest.mark.parametrize("planted", ["link", "file"])
async def test_the_report_is_read_with_a_bound_and_not_through_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, planted: str
) -> None:
    ws = workspace(tmp_path)
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(32 << 20)  # sparse; a link to /dev/zero would never end
    if planted == "link":
        linker = sh(f'ln -s "$1" "$MONAI_OUTPUTPATH/../{REPORT}"', str(big))
    else:  # 32 MiB of its own, sparse
        linker = sh(f'truncate -s 32M "$MONAI_OUTPUTPATH/../{REPORT}"')
    sizes: list[int] = []

    class RecordingJson:  # what read_report read, as it hands it to json.loads
        @staticmethod
        def loads(text: str) -> object:
            sizes.append(len(text))
            return json.loads(text)

    monkeypatch.setattr(report_module, "json", RecordingJson)
    outcome = await run(ProcessJobBackend(linker, process_options()), linker, ws)
    assert outcome.succeeded  # the MAP exited 0: no report, the supervisor's code
    if planted == "link":
        assert sizes == [], "MIS read the report through a link"
    else:
        assert sizes, "MIS never read the report"
        assert max(sizes) <= 4096, f"MIS read {max(sizes)} bytes of the report"


# 6. A MAP that forges the report, ends the pipe and kills its supervisor --------------------

KILLER = f"""
printf '%s' '{FORGED}' > "$MONAI_OUTPUTPATH/../{REPORT}"
setsid env -i /bin/sleep 313 </dev/null >/dev/null 2>&1 &
echo $$ $! > "$1"
exec >/dev/null 2>&1
kill -KILL $PPID
sleep 5
"""


@LOOPS
async def test_forged_report_then_killed_supervisor_leaves_nothing(tmp_path: Path) -> None:
    """Races the pipe's end (the supervisor's exit closes its files) against the orphans'
    move to MIS (later in that exit): the fast path (report there, supervisor not yet
    reaped) looks for orphans once, and may look in between. The MAP's sh itself dies by its
    parent-death signal; its children must not be left running."""
    backend = ProcessJobBackend(sh(KILLER), process_options(kill_grace_seconds=0.5))
    for n in range(20):
        ws = workspace(tmp_path / str(n))
        killer = sh(KILLER, str(tmp_path / f"pids{n}"))
        with anyio.fail_after(20):
            outcome = await run(backend, killer, ws)
        assert outcome.succeeded  # the forged report
        leftovers = my_leftovers(spare=backend.supervisors)  # those exiting are collected later
        assert leftovers == [], f"after run {n}: {leftovers}"
    await backend.close()


@LOOPS
async def test_garbage_report_then_killed_supervisor_leaves_nothing(tmp_path: Path) -> None:
    """A report that exists but does not parse: `_terminate` then skips both the group kill
    and the MONAI_JOBID kill; only the orphan reaping is left."""
    ws = workspace(tmp_path)
    pidfile = tmp_path / "pids"
    garbage = sh(
        f'printf garbage > "$MONAI_OUTPUTPATH/../{REPORT}"\n'
        "sleep 314 </dev/null >/dev/null 2>&1 &\n"  # same group, MONAI_JOBID kept
        "setsid env -i /bin/sleep 315 </dev/null >/dev/null 2>&1 &\n"
        'echo $$ $! > "$1"\n'
        "kill -KILL $PPID\n"
        "sleep 5\n",
        str(pidfile),
    )
    backend = ProcessJobBackend(garbage, process_options(kill_grace_seconds=0.5))
    with anyio.fail_after(20):
        outcome = await run(backend, garbage, ws)
    found = pids(pidfile, 2)
    try:
        assert outcome.reason == "was killed by signal SIGKILL"
        assert not any(is_alive(pid, grace=0.2) for pid in found)
        await backend.close()
        assert my_leftovers() == []
    finally:
        kill_all(found)


# 7. Under uvloop the log "pipe" is a socket: the MAP can end it without closing it ----------

SHUTDOWN = f"""
import os, socket, subprocess, sys, time
root = os.path.dirname(os.environ["MONAI_OUTPUTPATH"])
try:  # without the sandbox: a forged report beside its output
    with open(os.path.join(root, "{REPORT}"), "x") as report:
        report.write({FORGED!r})
except OSError:
    pass  # the sandbox hides the workspace's own files
child = subprocess.Popen(["setsid", "env", "-i", "/bin/sleep", "316"],
    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
open(sys.argv[1], "w").write(f"{{os.getpid()}} {{child.pid}}")
try:
    socket.socket(fileno=os.dup(1)).shutdown(socket.SHUT_WR)  # EOF for MIS, fd kept
except OSError:
    pass  # a real pipe: not a socket
time.sleep(20)
"""


@LOOPS
@pytest.mark.parametrize("sandboxed", [False, True], ids=["unsandboxed", "bubblewrap"])
async def test_a_map_cannot_end_the_run_early_by_shutting_the_log_socket(
    tmp_path: Path, sandboxed: bool
) -> None:
    """uvloop's subprocess pipes are socketpairs: a MAP can shut their write side, and MIS
    sees the log's end while the MAP and its supervisor live on. The run still waits for the
    MAP (here until it is cancelled), and then nothing of it is left."""
    if sandboxed:
        require_bubblewrap()
    ws = workspace(tmp_path)
    pidfile = Path(ws.output_dir) / "pids"  # seen alike inside the sandbox
    shut = py(SHUTDOWN, str(pidfile))
    chosen = sandbox.choose("bubblewrap") if sandboxed else sandbox.NO_SANDBOX
    backend = ProcessJobBackend(
        shut,
        process_options(kill_grace_seconds=0.5, sandbox=chosen, payload_root=Path(ws.payload_dir)),
    )
    found: list[int] = []
    try:
        with anyio.move_on_after(3) as waited:
            await run(backend, shut, ws)
        assert waited.cancelled_caught, "the run returned while its MAP was still running"
        await backend.close()
        if not sandboxed:  # inside, the pids are the sandbox's own: its namespace ends
            found = pids(pidfile, 2)  # with its first process
            assert [pid for pid in found if is_alive(pid, grace=0.2)] == []
    finally:
        kill_all(found)


# 8. Cancellation exactly between the report and the supervisor's exit -----------------------


@LOOPS
async def test_cancelled_right_after_the_report_was_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = workspace(tmp_path)
    backend = ProcessJobBackend(spec(), process_options(kill_grace_seconds=0.5))
    real = ending_module.read_report
    with anyio.fail_after(20), anyio.CancelScope() as scope:

        def cancelling(path: Path) -> object:
            scope.cancel()  # the timeout lands as the report is taken
            return real(path)

        monkeypatch.setattr(ending_module, "read_report", cancelling)
        outcome = await run(backend, spec(), ws)
        await (
            anyio.lowlevel.checkpoint()
        )  # where the run returned its outcome anyway, the cancel lands here
    # on asyncio the cancel ends the run; on uvloop it can be taken by the run's own task
    # group and the run returns its (right) outcome: both are fine
    assert scope.cancelled_caught
    assert "outcome" not in locals() or outcome.succeeded
    pid = supervisor_of(ws)
    await backend.close()
    assert backend._exiting == []
    assert backend.supervisors == set()
    assert not Path(f"/proc/{pid}").exists()
    assert my_leftovers() == []


@LOOPS
async def test_cancelling_a_map_that_forged_its_report_and_ignores_term(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    pidfile = tmp_path / "pids"
    stubborn = sh(
        f"printf '%s' '{FORGED}' > \"$MONAI_OUTPUTPATH/../{REPORT}\"\n"
        "trap '' TERM\n"
        "setsid env -i /bin/sleep 317 </dev/null >/dev/null 2>&1 &\n"
        'echo $$ $! > "$1"\n'
        "exec >&- 2>&-\n"
        "while :; do sleep 0.1; done\n",
        str(pidfile),
    )
    backend = ProcessJobBackend(stubborn, process_options(kill_grace_seconds=0.5))
    found: list[int] = []
    try:
        with anyio.fail_after(20), anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(run, backend, stubborn, ws)
                await await_until(lambda: len(words_of(pidfile)) >= 2, 20, "the MAP's pids")
                found = pids(pidfile, 2)
                await anyio.sleep(0.3)  # the pipe is still the supervisor's: not over yet
                assert is_alive(found[0], grace=0)
                scope.cancel()
        assert not any(is_alive(pid, grace=0.5) for pid in found)
        await backend.close()
        assert my_leftovers() == []
    finally:
        kill_all(found)


# 9. Two runs at once; one MAP kills its supervisor -----------------------------------------


@LOOPS
async def test_two_concurrent_runs_one_killing_its_supervisor(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    killer = sh(
        "setsid env -i /bin/sleep 318 </dev/null >/dev/null 2>&1 &\n"
        'echo $$ $! > "$1"\nkill -KILL $PPID\nsleep 5\n',
        str(pidfile),
    )
    slow = sh('sleep 1.5; echo ok > "$MONAI_OUTPUTPATH/ok"; echo finished')
    backend = ProcessJobBackend(slow, process_options(kill_grace_seconds=0.5))
    outcomes: dict[str, JobOutcome] = {}
    ws_a, ws_b = workspace(tmp_path / "a"), workspace(tmp_path / "b")

    async def one(name: str, map_spec: MapSpec, ws: Workspace) -> None:
        outcomes[name] = await run(backend, map_spec, ws)

    found: list[int] = []
    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(one, "slow", slow, ws_b)
                await await_until(lambda: len(backend.supervisors) == 1, 5, "the slow run")
                tg.start_soon(one, "killer", killer, ws_a)
        found = pids(pidfile, 2)
        assert outcomes["slow"].succeeded
        assert outcomes["slow"].log_tail == ("finished",)
        assert (Path(ws_b.output_dir) / "ok").exists()
        assert outcomes["killer"].reason == "was killed by signal SIGKILL"
        assert not any(is_alive(pid, grace=0.2) for pid in found)
        await backend.close()
        assert backend.supervisors == set()
        assert backend._exiting == []
        assert my_leftovers() == []
    finally:
        kill_all(found)


@LOOPS
async def test_many_concurrent_fast_runs(tmp_path: Path) -> None:
    backend = ProcessJobBackend(spec(), process_options())
    outcomes: list[JobOutcome] = []

    async def one(n: int) -> None:
        for k in range(3):
            ws = workspace(tmp_path / f"{n}-{k}")
            outcomes.append(await run(backend, spec(), ws))

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(one, n)
    assert len(outcomes) == 9
    assert all(o.succeeded for o in outcomes)
    await backend.close()
    assert backend.supervisors == set()
    assert backend._exiting == []
    assert my_leftovers() == []


# 11. The last lines of a big output are in the outcome ----------------------------------------


@LOOPS
async def test_the_tail_is_complete_after_a_burst_of_output(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    burst = py(
        "import sys; sys.stdout.write('x' * 100 + '\\n') ;"
        "[print(i) for i in range(20000)]; print('last', flush=True); sys.exit(9)"
    )
    outcome = await run(ProcessJobBackend(burst, process_options()), burst, ws)
    assert outcome.exit_code == 9
    last = range(20000 - LOG_TAIL_LINES + 1, 20000)
    assert outcome.log_tail == (*map(str, last), "last")


# 12. The supervisor cannot write its report: the payload volume is full ------------------------


async def test_a_full_volume_keeps_the_maps_own_exit_code(tiny_volume: Path) -> None:
    """A sandboxed MAP can fill the payload volume too (its output folder is on it)."""
    ws = workspace(tiny_volume)
    fill = sh('cat /dev/zero > "$MONAI_OUTPUTPATH/fill" 2>/dev/null; exit 7')
    outcome = await run(ProcessJobBackend(fill, process_options()), fill, ws)
    assert outcome.exit_code == 7, (outcome.reason, outcome.log_tail[-3:])
