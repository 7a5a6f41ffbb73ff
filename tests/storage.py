"""Helpers for storage tests: workspaces left behind by a MIS process that is gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_LEAVE = """
import os, sys, anyio
from pathlib import Path
from mis_app.bootstrap import build_storage
from mis_app.settings import Settings
settings = Settings.model_validate(
    {"server": {"payload_dir": sys.argv[1]}, "map": {"command": ["true"]}}
)
anyio.run(build_storage(settings).create, sys.argv[2])
os._exit(0)  # gone without deleting: as a MIS killed mid-request
"""


def leave_workspace(root: Path, job_id: str, python: str = sys.executable) -> Path:
    """A workspace made by another MIS process that then died; its folder."""
    subprocess.run([python, "-c", _LEAVE, str(root), job_id], check=True)
    return root / job_id
