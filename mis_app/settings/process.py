"""The `process` section: the process backend and its sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from mis_app.settings.section import Section


class ProcessSettings(Section):
    kill_grace_seconds: float = Field(5.0, ge=0)
    # processes and threads the MAP may add to those of MIS's user (RLIMIT_NPROC)
    pids_limit: int = Field(4096, ge=16)
    # bubblewrap: always (start-up fails where it does not work); auto: where it works
    sandbox: Literal["auto", "bubblewrap", "none"] = "auto"
    # folders the MAP sees read-only in the sandbox besides its program (a models folder)
    read_only_paths: list[Path] = []

    @field_validator("read_only_paths")
    @classmethod
    def _absolute(cls, paths: list[Path]) -> list[Path]:
        for path in paths:
            if not path.is_absolute():
                raise ValueError(f"{path} is not an absolute path")
        return paths
