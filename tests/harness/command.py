"""`mis` as a user runs it: this interpreter's `python -m mis_app`, from the repository."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from tests.harness.repo import REPO


def mis_argv(*argv: str | Path) -> list[str]:
    """The command line of `mis ARGV...`, for a process that a test starts and stops itself."""
    return [sys.executable, "-m", "mis_app", *map(str, argv)]


def mis_command(
    *argv: str | Path,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    timeout: float = 60,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`mis ARGV...` run to its end from `cwd`, with `env` (default: this one), its output
    captured as text; it fails the test if it runs past `timeout` seconds."""
    return subprocess.run(
        mis_argv(*argv),
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        cwd=cwd,
        timeout=timeout,
        preexec_fn=preexec_fn,
        check=False,
    )
