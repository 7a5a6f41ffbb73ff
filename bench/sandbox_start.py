"""What a process-backend run costs before the MAP does anything: `python -m bench.sandbox_start`.

A trivial MAP (`true`) through ProcessJobBackend.run, on uvloop as the server runs it:
with `process.sandbox: none` (the supervisor alone), with bubblewrap, and the floor (spawning
`true` and waiting for it, nothing else). Prints, for each, the median and 90th percentile of
the wall time, and the median CPU time its processes used (user + system: on a busy machine
the wall time mostly measures the wait for a CPU, the CPU time does not).
"""

from __future__ import annotations

import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from loguru import logger

from mis_adapters.process.backend import ProcessJobBackend
from mis_adapters.process.options import ProcessOptions
from mis_app.bootstrap import process_options
from mis_app.settings import Settings
from mis_core.model import JobProgress, JobRequest, MapSpec, Workspace

RUNS = 31


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def floor() -> tuple[float, float]:
    cpu, started = children_cpu(), time.perf_counter()
    process = await anyio.open_process(["true"], stdout=subprocess.DEVNULL)
    await process.wait()
    return time.perf_counter() - started, children_cpu() - cpu


async def one_run(
    backend: ProcessJobBackend, spec: MapSpec, payload: Path, n: int
) -> tuple[float, float]:
    workspace = Workspace(str(payload), f"run-{n}")
    Path(workspace.input_dir).mkdir(parents=True)
    Path(workspace.output_dir).mkdir()
    cpu, started = children_cpu(), time.perf_counter()
    outcome = await backend.run(JobRequest(workspace.name, spec, workspace), JobProgress())
    elapsed = time.perf_counter() - started, children_cpu() - cpu
    assert outcome.succeeded, outcome
    shutil.rmtree(workspace.root)
    return elapsed


def options(payload: Path, sandbox: str) -> ProcessOptions:
    """The process backend's options as MIS builds them, with this payload folder and sandbox."""
    settings = {"server": {"payload_dir": str(payload)}, "process": {"sandbox": sandbox}}
    return process_options(Settings.model_validate(settings))


async def main() -> None:
    logger.remove()
    spec = MapSpec(command=("true",))
    with tempfile.TemporaryDirectory() as scratch:
        payload = Path(scratch)
        variants = {
            "spawn only (floor)": None,
            "sandbox none": ProcessJobBackend(spec, options(payload, "none")),
            "sandbox bubblewrap": ProcessJobBackend(spec, options(payload, "bubblewrap")),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for n in range(RUNS):  # interleaved, so a busy moment hits every variant alike
            for name, backend in variants.items():
                if backend is None:
                    times[name].append(await floor())
                else:
                    times[name].append(await one_run(backend, spec, payload, n))
    for name, samples in times.items():
        wall = [w for w, _ in samples]
        median = statistics.median(wall) * 1000
        p90 = statistics.quantiles(wall, n=10)[-1] * 1000
        cpu = statistics.median(c for _, c in samples) * 1000
        print(f"{name:20} wall median {median:6.1f} ms, p90 {p90:6.1f} ms; CPU {cpu:5.1f} ms")
    print(f"{RUNS} runs each, python {sys.version.split()[0]}")


if __name__ == "__main__":
    anyio.run(main, backend_options={"use_uvloop": True})
