"""MkDocs hook: the bench's latest chart joins the site from bench/results/, where
`nox -s bench` writes it, so the Performance page shows the run its table comes from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "bench" / "results" / "latest.png"


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "images/bench-latest.png", abs_src_path=str(CHART)))
    return files
