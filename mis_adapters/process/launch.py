"""How one MAP run is started on the process backend: its environment and its command line.

The environment is built from nothing: the MAP variables, the thread counts, the GPUs,
`HOME` and `TMPDIR` in the request's workspace, a few harmless basics of MIS's own (`PATH`,
the locale, the time zone) and `map.env` last. Nothing else of MIS's environment (its
`MIS_*` settings, tokens, `KUBECONFIG`, cloud credentials) reaches the MAP, sandbox or not.

The command line is the supervisor (see supervisor.py), then bubblewrap's when the sandbox
is on, then the MAP's own command.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from mis_adapters.storage.layout import RUN_REPORT as REPORT
from mis_core.model import JobRequest

__all__ = ["REPORT", "SUPERVISOR", "absolute_words", "basic_environment", "supervised"]

SUPERVISOR = str(Path(__file__).with_name("supervisor.py"))
BASICS = frozenset({"PATH", "LANG", "LANGUAGE", "TZ"})  # and every LC_*


def basic_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the MAP takes from MIS's environment."""
    return {k: v for k, v in environ.items() if k in BASICS or k.startswith("LC_")}


def map_run_environment(request: JobRequest, basics: Mapping[str, str]) -> dict[str, str]:
    workspace = request.workspace
    env = dict(basics)
    env["HOME"] = workspace.work_dir
    env["TMPDIR"] = workspace.tmp_dir
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(request.map.resources.gpu))
    env.update(request.environment(request.host_folders))  # thread counts, MAP vars, map.env
    return env


def absolute_words(argv: Sequence[str], cwd: str) -> list[str]:
    """`argv` with relative paths made absolute against MIS's own directory.

    The MAP runs in its own working folder, while a command such as
    `python3 examples/app.py` names files relative to where MIS was started. A word becomes
    absolute only when it names an existing file there (and, for the program, contains a
    `/`: a bare name is looked up on PATH).
    """
    words: list[str] = []
    for index, word in enumerate(argv):
        candidate = os.path.join(cwd, word)
        if (
            word
            and not os.path.isabs(word)
            and (index > 0 or "/" in word)
            and os.path.exists(candidate)
        ):
            word = os.path.normpath(candidate)
        words.append(word)
    return words


def supervised(
    command: Sequence[str],
    *,
    report: str,
    grace: float,
    memory: int,
    processes: int,
    cwd: str,
    sandboxed: bool,
    sandbox_args: int = 0,
) -> list[str]:
    """`command` under the supervisor, run by MIS's own Python in isolated mode.

    `sandbox_args`: how many words after the sandbox's program are its own arguments, which
    the supervisor hands it through a pipe rather than on its command line."""
    options = ["--parent", str(os.getpid()), "--report", report, "--grace", f"{grace:g}"]
    options += ["--memory", str(memory), "--processes", str(processes), "--cwd", cwd]
    if sandboxed:
        options.append("--sandboxed")
    if sandbox_args:
        options += ["--sandbox-args", str(sandbox_args)]
    return [sys.executable, "-I", "-S", SUPERVISOR, *options, "--", *command]
