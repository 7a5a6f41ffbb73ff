"""Unpacking many small files, measured alone: time and peak RSS of `extract_archive` in a
fresh process for each run (`python -m bench.unpack [FILES] [--module M]`).

The many-small-files profile of `nox -s bench` (100,000 files of 4 KB) spends most of its
time here; this isolates it from HTTP and the MAP, so changes can be compared side by side.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from bench import MIS_MODULES
from bench.procstat import Costs

MiB = 1024 * 1024


def make_archive(path: Path, files: int, size: int) -> None:
    block = os.urandom(size)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for n in range(files):
            zf.writestr(f"study/series-{n % 100:03d}/slice-{n:06d}.dcm", block)


def run_one(module: str, archive: Path, destination: Path, workers: int) -> dict[str, float]:
    extract = importlib.import_module(module)
    if module.startswith(MIS_MODULES):  # MIS's own take every argument: -1 is auto for them
        workers = max(workers, 0)
    options = {"workers": workers} if workers >= 0 else {}
    limits = extract.ExtractLimits(
        max_extracted_bytes=2**40, max_entries=10**7, max_compression_ratio=1e9
    )
    costs = Costs()
    count = extract.extract_archive(archive, destination, limits, **options)
    return {"files": count, **costs.report()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", type=int, nargs="?", default=100_000)
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--module", action="append", default=[])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--workers", type=int, action="append", default=[])
    parser.add_argument("--dir", type=Path, default=Path.cwd(), help="where to unpack")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        module, archive, destination, workers = options.child
        print(json.dumps(run_one(module, Path(archive), Path(destination), int(workers))))
        return
    # (module, workers): -1 is a module's own default (one without the option); 0: auto
    runs = [(m, -1) for m in options.module] + [
        ("mis_adapters.storage.archive", w) for w in options.workers
    ]
    runs = runs or [("mis_adapters.storage.archive", 0)]
    with tempfile.TemporaryDirectory(dir=options.dir) as work:
        archive = Path(work) / "study.zip"
        make_archive(archive, options.files, options.size)
        print(
            f"{options.files} files of {options.size} bytes, {archive.stat().st_size / MiB:.0f} MiB stored"
        )
        for _ in range(options.runs):
            for module, workers in runs:
                destination = Path(work) / "input"
                destination.mkdir()
                subprocess.run(["sync"], check=True)
                result = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "bench.unpack",
                        "--child",
                        module,
                        str(archive),
                        str(destination),
                        str(workers),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                label = {-1: "default", 0: "auto"}.get(workers, str(workers))
                print(module, label, result.stdout.strip())
                shutil.rmtree(destination)


if __name__ == "__main__":
    main()
