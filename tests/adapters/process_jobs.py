"""Workspaces, MAP specs and supervisors for tests of the process backend."""

from __future__ import annotations

import sys
from pathlib import Path

from mis_adapters.storage.layout import RUN_RECORD
from mis_core.model import MapSpec, Resources, Workspace

SCRIPTED_MAP = str(Path(__file__).parents[1] / "maps" / "scripted_map.py")


def workspace(tmp_path: Path) -> Workspace:
    ws = Workspace(str(tmp_path), "req-7")
    Path(ws.input_dir).mkdir(parents=True)
    Path(ws.output_dir).mkdir()
    return ws


def spec(**changes: object) -> MapSpec:
    values: dict[str, object] = {
        "command": (sys.executable, SCRIPTED_MAP),
        "args": ("-i", "{input_path}", "-o", "{output_path}"),
        "resources": Resources(cpu="2500m", gpu=2),
        "timeout_seconds": 30,
        "env": {"MODEL_NAME": "spleen"},
    }
    values.update(changes)
    return MapSpec(**values)  # type: ignore[arg-type]


def supervisor_of(ws: Workspace) -> int:
    """The run's supervisor, as the backend recorded it in the workspace."""
    return int(Path(ws.file(RUN_RECORD)).read_text().split()[0])
