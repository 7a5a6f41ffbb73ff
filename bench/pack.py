"""Packing the output, measured alone: time, CPU and peak RSS of `zip_folder` in a fresh
process for each run (`python -m bench.pack [--profile P] [--workers N] [--module M]`).

Two output folders, made once per invocation: the CT-like mix of `nox -s bench` (500 slices
of 512 KB, half smooth raw pixels that deflate, half noise that "adaptive" stores) and many
small files (20,000 of 4 KB, of the same mix). By default each runs with one worker (the
serial path) and with auto (server.workers: 0) side by side, in alternation, so a loaded
machine weighs on both alike.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import MIS_MODULES
from bench.payloads import KiB, MiB, _smooth_block, file_bytes
from bench.procstat import Costs
from mis_adapters.cpus import worker_count
from mis_adapters.zip import OutputLimits

PROFILES = {"CT-500x512KB": (500, 512 * KiB), "small-20000x4KB": (20_000, 4 * KiB)}


def make_folder(folder: Path, files: int, size: int) -> None:
    smooth = _smooth_block(random.Random(0), 256 * KiB)
    for n in range(files):
        path = folder / "study" / f"series-{n % 4}" / f"IM{n:05d}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(file_bytes(n, size, smooth))


def run_one(module: str, folder: Path, workers: int, policy: str) -> dict[str, float]:
    zip_folder = importlib.import_module(module).zip_folder
    # MIS's zip_folder takes every argument (-1: auto); another module (-1) its own defaults
    mis = {"workers": max(workers, 0), "limits": OutputLimits(), "spill_to": None}
    options = mis if workers >= 0 or module.startswith(MIS_MODULES) else {}
    costs = Costs()
    chunks = zip_folder(folder, 1, policy, **options)
    size = len(next(chunks))
    first = time.perf_counter() - costs.started
    size += sum(len(chunk) for chunk in chunks)
    return {
        "mb_out": round(size / MiB, 1),
        "first_chunk_ms": round(first * 1000, 1),
        **costs.report(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", choices=list(PROFILES), action="append", default=[])
    parser.add_argument("--workers", type=int, action="append", default=[], help="0: auto")
    parser.add_argument("--module", action="append", default=[], help="another zip_folder")
    parser.add_argument("--policy", default="adaptive")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where to make the folders")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        module, folder, workers, policy = options.child
        print(json.dumps(run_one(module, Path(folder), int(workers), policy)))
        return
    # (module, workers): -1 is a module's own default (one without the option)
    runs = [("mis_adapters.zip.writer", w) for w in options.workers or [1, 0]]
    runs += [(m, -1) for m in options.module]
    print(f"auto is {worker_count(0)} workers; load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory(dir=options.dir) as work:
        for name in options.profile or list(PROFILES):
            files, size = PROFILES[name]
            folder = Path(work) / name
            make_folder(folder, files, size)
            print(f"{name}: {files} files of {size // KiB} KiB, policy {options.policy}")
            for _ in range(options.runs):
                for module, workers in runs:
                    child = [module, str(folder), str(workers), options.policy]
                    result = subprocess.run(
                        [sys.executable, "-m", "bench.pack", "--child", *child],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    label = {-1: "default", 0: "auto"}.get(workers, str(workers))
                    print(f"  {module} workers={label} {result.stdout.strip()}")
            print(f"  load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
