"""The process backend with real subprocesses."""

from __future__ import annotations

import json
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from mis_adapters.map_follow import LOG_TAIL_LINES
from mis_adapters.process import backend as backend_module
from mis_adapters.process.backend import ProcessJobBackend
from mis_adapters.process.sandbox import choose
from mis_adapters.storage.archive import INPUT_MODES, ExtractLimits
from mis_adapters.zip import layout as zip_layout
from mis_adapters.zip import reader as archive_module
from mis_adapters.zip import unpack_processes
from mis_core.errors import BackendUnavailable
from mis_core.model import (
    JobOutcome,
    JobProgress,
    JobRequest,
    MapSpec,
    Resources,
)
from mis_core.quantity import CpuQuantity
from tests.adapters.process_jobs import spec, supervisor_of, workspace
from tests.built import process_options
from tests.containment.probes import require_bubblewrap
from tests.harness.wait import await_until
from tests.processes import is_alive

pytestmark = pytest.mark.anyio

LIMITS = ExtractLimits(max_extracted_bytes=1 << 20, max_entries=100, max_compression_ratio=100.0)


async def test_success_with_the_map_environment(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    (Path(ws.input_dir) / "scan.dcm").write_bytes(b"dicom")
    backend = ProcessJobBackend(spec(), process_options())

    outcome = await backend.run(JobRequest("req-7", spec(), ws), JobProgress())

    assert outcome.succeeded
    assert outcome.exit_code == 0
    assert (Path(ws.output_dir) / "scan.dcm").read_bytes() == b"dicom"
    env = json.loads((Path(ws.output_dir) / "_env.json").read_text())
    assert env["MONAI_INPUTPATH"] == env["HOLOSCAN_INPUT_PATH"] == ws.input_dir
    assert env["MONAI_OUTPUTPATH"] == env["HOLOSCAN_OUTPUT_PATH"] == ws.output_dir
    assert env["MONAI_JOBID"] == "req-7"
    assert env["MONAI_TIMEOUT"] == "30"
    assert env["MONAI_HOSTNAME"] == "monai-inference-service"
    assert env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "2"
    argv = json.loads((Path(ws.output_dir) / "_argv.json").read_text())
    assert argv == ["-i", ws.input_dir, "-o", ws.output_dir]


async def test_no_gpu_means_an_empty_cuda_visible_devices(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    no_gpu = spec(resources=Resources(cpu="1", gpu=0))
    await ProcessJobBackend(no_gpu, process_options()).run(
        JobRequest("r", no_gpu, ws), JobProgress()
    )
    env = json.loads((Path(ws.output_dir) / "_env.json").read_text())
    assert env["CUDA_VISIBLE_DEVICES"] == ""


async def test_map_log_lines_reach_the_log_tagged_with_the_request_id(tmp_path: Path) -> None:
    from loguru import logger

    lines: list[tuple[str, str, str]] = []
    sink = logger.add(
        lambda m: lines.append(
            (
                m.record["extra"].get("request_id", ""),
                m.record["extra"].get("source", ""),
                m.record["message"],
            )
        )
    )
    try:
        with logger.contextualize(request_id="req-7"):
            await ProcessJobBackend(spec(), process_options()).run(
                JobRequest("req-7", spec(), workspace(tmp_path)), JobProgress()
            )
    finally:
        logger.remove(sink)
    assert ("req-7", "map", "scripted MAP starting in mode copy") in lines
    assert ("req-7", "map", "scripted MAP done") in lines


async def test_non_zero_exit_is_reported_with_code_and_last_lines(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    (Path(ws.input_dir) / "_mode").write_text("fail")
    backend = ProcessJobBackend(spec(), process_options())

    outcome = await backend.run(JobRequest("req-7", spec(), ws), JobProgress())

    assert not outcome.succeeded
    assert outcome.exit_code == 3
    assert outcome.reason == "exited with code 3"
    steps = range(30 - LOG_TAIL_LINES + 1, 30)  # the scripted MAP's last steps, then its error
    assert outcome.log_tail == (
        *(f"working on step {n}" for n in steps),
        "error: the model could not be loaded",
    )


async def test_a_missing_program_is_backend_unavailable_as_readiness_says(tmp_path: Path) -> None:
    missing = spec(command=("/nonexistent/map-binary",), args=())
    with pytest.raises(BackendUnavailable, match="/nonexistent/map-binary was not found"):
        await ProcessJobBackend(missing, process_options()).run(
            JobRequest("r", missing, workspace(tmp_path)), JobProgress()
        )


async def test_cancelling_kills_the_map_and_the_child_it_spawned(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    (Path(ws.input_dir) / "_mode").write_text("hang")
    pidfile = tmp_path / "pids"
    hanging = spec(env={"MIS_TEST_PIDFILE": str(pidfile)})
    backend = ProcessJobBackend(hanging, process_options(kill_grace_seconds=0.5))

    started = time.monotonic()
    with anyio.move_on_after(30) as deadline, anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(backend.run, JobRequest("r", hanging, ws), JobProgress())
            await await_until(
                lambda: pidfile.exists() and len(pidfile.read_text().split()) >= 2,
                30,
                "the MAP and its child to start",
            )
            scope.cancel()
    assert not deadline.cancelled_caught
    parent, child = (int(pid) for pid in pidfile.read_text().split())
    assert not is_alive(parent)
    assert not is_alive(child)
    assert time.monotonic() - started < 10


async def test_term_ignoring_map_is_killed_after_the_grace(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    marker, termed = tmp_path / "ready", tmp_path / "termed"
    stubborn = MapSpec(
        command=(
            sys.executable,
            "-c",
            "import signal, time, pathlib, sys, os\n"
            "signal.signal(signal.SIGTERM, lambda *_: pathlib.Path(sys.argv[2]).touch())\n"
            "pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))\n"
            "while True: time.sleep(3600)",
            str(marker),
            str(termed),
        )
    )
    grace = 0.5
    backend = ProcessJobBackend(stubborn, process_options(kill_grace_seconds=grace))
    with anyio.fail_after(10), anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(backend.run, JobRequest("r", stubborn, ws), JobProgress())
            await await_until(
                lambda: marker.exists() and marker.read_text() != "", 10, "the MAP to start"
            )
            cancelled = time.monotonic()
            scope.cancel()
    stopped = time.monotonic() - cancelled
    assert termed.exists()  # it was asked first, and ignored it ...
    assert stopped >= grace  # ... and was given the grace before SIGKILL
    assert not is_alive(int(marker.read_text()))


async def test_strays_left_running_after_the_map_exits_are_killed(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    pidfile = tmp_path / "stray"
    leaves_stray = MapSpec(
        command=(
            sys.executable,
            "-c",
            "import subprocess, sys, pathlib\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'],"
            " stdout=subprocess.DEVNULL)\n"
            "pathlib.Path(sys.argv[1]).write_text(str(p.pid))",
            str(pidfile),
        )
    )
    with anyio.fail_after(10):
        outcome = await ProcessJobBackend(leaves_stray, process_options()).run(
            JobRequest("r", leaves_stray, ws), JobProgress()
        )
    assert outcome.succeeded
    assert not is_alive(int(pidfile.read_text()))


async def test_a_stray_that_keeps_leaving_ended_orphans_is_still_killed(tmp_path: Path) -> None:
    """The supervisor reaps children that have already ended before it looks for strays; a
    stray that orphans a fresh short-lived process in a loop always has one ready to reap,
    and must not keep the look (and its kill) from coming."""
    ws = workspace(tmp_path)
    pidfile = tmp_path / "spawner"
    spawner = MapSpec(
        command=(
            "sh",
            "-c",
            'sh -c \'echo $$ > "$1"; while :; do (true &); done\' _ "$1" & '
            'while [ ! -s "$1" ]; do :; done',
            "_",
            str(pidfile),
        )
    )
    with anyio.fail_after(10):
        outcome = await ProcessJobBackend(spawner, process_options()).run(
            JobRequest("r", spawner, ws), JobProgress()
        )
    assert outcome.succeeded
    assert pidfile.read_text().strip()
    assert not is_alive(int(pidfile.read_text()))


async def test_readiness_checks_that_the_program_exists() -> None:
    await ProcessJobBackend(spec(), process_options()).check()
    with pytest.raises(BackendUnavailable, match=r"map\.command"):
        await ProcessJobBackend(spec(command=("no-such-map-program",)), process_options()).check()


@pytest.mark.parametrize(
    ("quantity", "threads"), [("1", 1), ("2", 2), ("2.5", 2), ("500m", 1), ("4000m", 4)]
)
def test_cpu_quantity_to_threads(quantity: str, threads: int) -> None:
    assert CpuQuantity.parse(quantity).threads == threads


DUMP_ENV = (
    "import json, os, pathlib\n"
    "out = pathlib.Path(os.environ['MONAI_OUTPUTPATH'])\n"
    "(out / 'env.json').write_text(json.dumps({**os.environ, 'cwd': os.getcwd()}))"
)


async def test_the_environment_is_built_from_nothing(tmp_path: Path) -> None:
    ws = workspace(tmp_path)
    mis_environment = {
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "LC_TIME": "en_GB.UTF-8",
        "MIS_SERVER__AUTH__TOKENS_FILE": "/etc/mis/tokens",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "KUBECONFIG": "/root/.kube/config",
        "PYTHONPATH": "/opt/mis",
        "HOME": "/root",
    }
    dumper = MapSpec(command=(sys.executable, "-c", DUMP_ENV), env={"MODEL_NAME": "spleen"})
    backend = ProcessJobBackend(dumper, process_options(), base_env=mis_environment)

    outcome = await backend.run(JobRequest("req-7", dumper, ws), JobProgress())

    assert outcome.succeeded, outcome
    env = json.loads((Path(ws.output_dir) / "env.json").read_text())
    cwd = env.pop("cwd")
    env.pop("LC_CTYPE", None)  # Python may set it itself (PEP 538)
    assert sorted(env) == sorted(
        [
            "PATH",
            "LANG",
            "LC_TIME",
            "HOME",
            "TMPDIR",
            "CUDA_VISIBLE_DEVICES",
            "MODEL_NAME",
            *("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"),
            *("NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"),
            *("MONAI_INPUTPATH", "MONAI_OUTPUTPATH", "HOLOSCAN_INPUT_PATH"),
            *("HOLOSCAN_OUTPUT_PATH", "MONAI_JOBID", "MONAI_TIMEOUT"),
            *("MONAI_HOSTNAME", "MONAI_HOSTVERSION"),
            "PYTHONUNBUFFERED",
        ]
    )
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["HOME"] == cwd == ws.work_dir
    assert env["TMPDIR"] == ws.tmp_dir


async def test_relative_paths_in_the_command_stay_relative_to_mis_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "apps").mkdir(parents=True)
    (checkout / "apps" / "dump.py").write_text(DUMP_ENV)
    monkeypatch.chdir(checkout)
    relative = MapSpec(command=(sys.executable, "apps/dump.py"), args=("--fast",))
    ws = workspace(tmp_path / "payload")

    outcome = await ProcessJobBackend(relative, process_options()).run(
        JobRequest("r", relative, ws), JobProgress()
    )

    assert outcome.succeeded, outcome
    env = json.loads((Path(ws.output_dir) / "env.json").read_text())
    assert env["cwd"] == ws.work_dir  # the MAP runs in its own folder, yet found its script


async def test_a_run_ending_leaves_the_unpack_workers_of_another_request_alone(
    tmp_path: Path,
) -> None:
    """With server.max_concurrent above one, another request's archive may be unpacking on
    worker processes (MIS's own children, started during this run) when this run's MAP
    ends: the look for what a MAP left behind must not take them for its orphans."""
    ws = workspace(tmp_path)
    started, release = tmp_path / "started", tmp_path / "release"
    (Path(ws.input_dir) / "_mode").write_text("wait")
    waits = spec(env={"MIS_TEST_STARTED": str(started), "MIS_TEST_RELEASE": str(release)})
    archive, dest = tmp_path / "other.zip", tmp_path / "other-input"
    dest.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        for n in range(20):
            zf.writestr(f"s{n % 3}/{n}.dcm", b"x" * n)
    source = open(archive, "rb")  # noqa: SIM115 - closed below, after the workers
    layout = zip_layout.read_layout(source)
    bounds = archive_module._plan(source, layout, LIMITS, archive_module._volume(dest)).bounds
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            outcome: list[JobOutcome] = []

            async def run() -> None:
                outcome.append(
                    await ProcessJobBackend(waits, process_options()).run(
                        JobRequest("r", waits, ws), JobProgress()
                    )
                )

            tg.start_soon(run)
            await await_until(started.exists, 30, "the MAP to start")
            # the other request's workers, as write_in_processes starts them: each waits
            # for its overlap bounds on stdin
            workers = [
                unpack_processes._start(source.fileno(), dest, INPUT_MODES, i, 2) for i in range(2)
            ]
            release.touch()
    assert outcome[0].succeeded
    try:
        unpack_processes._send(workers, bounds.tobytes())
        results = unpack_processes._results(workers)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
        source.close()
    assert sum(result["files"] for result in results) == 20


def sandboxed(payload_root: Path) -> ProcessJobBackend:
    require_bubblewrap()
    return ProcessJobBackend(
        spec(), process_options(sandbox=choose("bubblewrap"), payload_root=payload_root)
    )


async def test_the_supervisors_are_collected_by_the_next_run_and_at_close(tmp_path: Path) -> None:
    """In the sandbox a run ends when its supervisor has reported, before its own exit;
    nothing of it is left once the next run starts, nor once the backend closes."""
    backend = sandboxed(tmp_path)
    supervisors = []
    for n in range(2):
        ws = workspace(tmp_path / str(n))
        assert (await backend.run(JobRequest("r", spec(), ws), JobProgress())).succeeded
        supervisors.append(supervisor_of(ws))
        if n:  # the first was collected as the second started
            assert not Path(f"/proc/{supervisors[0]}").exists()  # reaped, not even a zombie
    await backend.close()
    assert not Path(f"/proc/{supervisors[1]}").exists()
    assert backend.supervisors == set()


async def test_a_supervisor_that_reported_but_hangs_is_killed_when_collected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the sandbox the run's outcome comes from the report once the log pipe has ended,
    without waiting for the supervisor's exit; one that never exits is killed when it is
    collected."""
    monkeypatch.setattr(backend_module, "supervised", stand_in_supervisor(exits_after=600))
    ws = workspace(tmp_path)
    backend = sandboxed(tmp_path)
    outcome = await backend.run(JobRequest("r", spec(), ws), JobProgress())
    assert outcome.succeeded
    pid = supervisor_of(ws)
    assert is_alive(pid, grace=0)  # the run did not wait for its exit
    await backend.close()
    assert not Path(f"/proc/{pid}").exists()


def stand_in_supervisor(exits_after: float) -> Callable[..., list[str]]:
    """In place of `supervised`: a supervisor that reports success, closes its output, and
    exits only `exits_after` seconds later."""

    def supervised(command: list[str], *, report: str, **_: object) -> list[str]:
        script = (
            "import os, sys, time\n"
            "open(sys.argv[1], 'x').write("
            '\'{"exit_code": 0, "signal": 0, "peak_rss_kib": 1}\\n\')\n'
            "print('reported', flush=True)\n"
            "os.closerange(0, 3)\n"
            f"time.sleep({exits_after})\n"
        )
        return [sys.executable, "-c", script, report]

    return supervised


async def test_without_the_sandbox_the_run_waits_for_the_supervisors_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the sandbox a MAP can plant a report, end the log's stream and kill its
    supervisor, whose processes reach MIS only as the supervisor exits: so the run ends with
    that exit, not with the report."""
    monkeypatch.setattr(backend_module, "supervised", stand_in_supervisor(exits_after=1))
    ws = workspace(tmp_path)
    outcome = await ProcessJobBackend(spec(), process_options()).run(
        JobRequest("r", spec(), ws), JobProgress()
    )
    assert outcome.succeeded
    assert not is_alive(supervisor_of(ws), grace=0)
