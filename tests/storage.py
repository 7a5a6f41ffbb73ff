"""Helpers for storage tests: workspaces left behind by a MIS process that is gone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_LEAVE = """
import os, sys, anyio
from pathlib import Path
from mis_adapters.storage.volume import LocalStorage, PayloadLimits
limits = PayloadLimits(10**6, 10**9, 1000, 200)
anyio.run(LocalStorage(Path(sys.argv[1]), limits).create, sys.argv[2])
os._exit(0)  # gone without deleting: as a MIS killed mid-request
"""


def leave_workspace(root: Path, job_id: str, python: str = sys.executable) -> Path:
    """A workspace made by another MIS process that then died; its folder."""
    subprocess.run([python, "-c", _LEAVE, str(root), job_id], check=True)
    return root / job_id
