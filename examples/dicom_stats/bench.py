"""Measure the example MAP on a synthetic CT series: time per slice and peak memory.

    python examples/dicom_stats/bench.py [SLICES] [--app PATH] [--runs N]

Writes a series of SLICES 512×512 slices (default 1,000; see synthetic.py) to a temporary
folder, runs the MAP on it as MIS would with `cpu: "1"` (one thread for numpy's libraries),
and prints the wall time, the time per slice and the MAP's peak RSS. `--app` measures
another version of app.py (an older one from git, say) on the same input.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from synthetic import write_zip

HERE = Path(__file__).resolve().parent
THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
SINGLE_THREAD = dict.fromkeys(THREADS, "1")


def run_once(app: Path, study: Path, output: Path) -> tuple[float, float, int]:
    """Wall and CPU seconds and peak RSS (bytes) of one run, in a fresh child process.

    CPU time (user + system) is the steadier number on a shared machine."""
    output.mkdir()
    probe = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(time.perf_counter() - start, usage.ru_utime + usage.ru_stime,"
        " usage.ru_maxrss * 1024)\n"
    )
    command = [sys.executable, str(app), "--input", str(study), "--output", str(output)]
    result = subprocess.run(
        [sys.executable, "-c", probe, *command],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **SINGLE_THREAD},
    )
    seconds, cpu, peak = result.stdout.split()
    return float(seconds), float(cpu), int(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("slices", nargs="?", type=int, default=1000)
    parser.add_argument("--app", type=Path, default=HERE / "app.py")
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        start = time.perf_counter()
        with zipfile.ZipFile(write_zip(work / "study.zip", options.slices)) as zf:
            zf.extractall(work / "input")
        print(f"wrote {options.slices} slices in {time.perf_counter() - start:.1f} s")
        for run in range(options.runs):
            seconds, cpu, peak = run_once(options.app, work / "input", work / f"output-{run}")
            print(
                f"run {run + 1}: {seconds:.2f} s wall, {cpu:.2f} s CPU,"
                f" {cpu / options.slices * 1000:.1f} ms CPU a slice,"
                f" peak RSS {peak / 2**20:.0f} MiB"
            )


if __name__ == "__main__":
    main()
