"""The process backend's sandbox: bubblewrap (`bwrap`), where it works, around every MAP run.

Inside it the MAP has its own PID, network (loopback only), IPC, UTS, user and cgroup
namespaces, cannot make user namespaces of its own, and sees of the host's files only an
allow-list (view.py), read-only: the system's folders, a few /etc files, its own program and
the folders in `process.read_only_paths`. On top of those, its request's folders at their
host paths: `input/` read-only, `output/`, `work/` and `tmp/` writable, and `/tmp` is the
request's `tmp/`. A fresh `/dev` (null, zero, random, tty, ..., the GPUs when `gpu > 0`),
read-only but for a `/dev/shm` no larger than the memory limit, and a `/proc` of its own
processes only. Everything else is read-only, the root included.

When its first process ends, every process in it is killed (the namespace's init goes), and
when MIS or the supervisor dies, `--die-with-parent` ends it.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
from typing import Literal

import attrs

from mis_adapters.process import limits
from mis_adapters.process.view import View, system_view
from mis_core.model import Workspace

SandboxSetting = Literal["auto", "bubblewrap", "none"]

# `--disable-userns` (bubblewrap 0.8 and later; it needs `--unshare-user`): the MAP cannot
# make user namespaces of its own, which would give it every capability inside them (mounts,
# raw sockets...), the kernel surface most namespace escapes start from. The start-up probe
# runs these same arguments, so an older bwrap is reported, not silently weaker.
NAMESPACES = (
    "--unshare-all",
    "--unshare-user",
    "--disable-userns",
    "--die-with-parent",
    "--new-session",
)
BASE = (*NAMESPACES, "--cap-drop", "ALL")


class SandboxUnavailable(Exception):
    """`process.sandbox: bubblewrap` was asked for and bubblewrap does not work here."""


@attrs.frozen
class Sandbox:
    """The sandbox MIS uses for every MAP run: bubblewrap's path, or none (with why)."""

    bwrap: str = ""
    reason: str = ""  # why there is none

    @property
    def name(self) -> str:
        return "bubblewrap" if self.bwrap else "none"


NO_SANDBOX = Sandbox(reason="process.sandbox is none")


def choose(setting: SandboxSetting) -> Sandbox:
    """The sandbox for `setting`, probing bubblewrap once (a sandbox that runs `true`)."""
    if setting == "none":
        return NO_SANDBOX
    problem = probe()
    if problem is None:
        return Sandbox(bwrap=shutil.which("bwrap") or "bwrap")
    if setting == "bubblewrap":
        raise SandboxUnavailable(
            f"process.sandbox: bubblewrap does not work here: {problem}. Install bubblewrap "
            "and allow unprivileged user namespaces, or set process.sandbox to auto or none."
        )
    return Sandbox(reason=problem)


def probe() -> str | None:
    """None when bubblewrap can build the sandbox here, else why not."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bwrap is not installed (Debian and Ubuntu: the bubblewrap package)"
    try:
        result = subprocess.run(
            [*bwrap_argv(Sandbox(bwrap=bwrap), system_view(), None), "--", "true"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not be run ({exc})"
    if result.returncode != 0:
        said = result.stderr.decode(errors="replace").strip() or f"exit code {result.returncode}"
        return (
            f"bwrap failed ({said}); it must be bubblewrap 0.8 or later (for "
            "--disable-userns), and unprivileged user namespaces may be disabled "
            "(kernel.unprivileged_userns_clone, user.max_user_namespaces) or MIS runs in a "
            "container that forbids them"
        )
    return None


def containment(chosen: Sandbox) -> list[str]:
    """What is and is not contained, for the start-up log and `mis config check`."""
    always = (
        "whatever the sandbox: a clean environment (the MAP variables, map.env, PATH and the "
        "locale), no file descriptor of MIS's, the request's own working folder, HOME and "
        "TMPDIR, and every process the MAP starts is killed when its run ends; "
        f"{limits.ENFORCEMENT}"
    )
    if chosen.bwrap:
        return [
            "process sandbox: bubblewrap. The MAP has no network (loopback only), sees no "
            "process but its own, and of the host's files only the system's folders, a few "
            "/etc files, its own program and process.read_only_paths, read-only, and its "
            "request's folders (input read-only; output, work and /tmp its own)",
            always,
        ]
    return [
        f"process sandbox: none ({chosen.reason}). NOT contained: the MAP runs as MIS's user "
        "with the host's network (MIS's own port included), can signal and trace MIS's "
        "processes, and can read and write whatever that user can: other requests' "
        "workspaces, the tokens file, the TLS key, the configuration",
        always,
    ]


def bwrap_argv(
    sandbox: Sandbox,
    view: View,
    workspace: Workspace | None,
    *,
    gpu: int = 0,
    shm_bytes: int = 0,
) -> list[str]:
    """The bwrap command line (up to `--`) for one MAP run (or, without a workspace, for the
    start-up probe).

    Order matters: a later mount covers an earlier one, so /tmp (the request's own) comes
    first, then the view's entries, parents first, and the request's folders. bubblewrap
    makes the folders a mount needs in the root's empty tmpfs, or, under /tmp, in an empty
    tmpfs of their own rather than in the request's tmp; all are made read-only last."""
    request = _request_folders(workspace)
    under_tmp = _first_below("/tmp", [e.path for e in view.entries] + [f for f, _ in request])
    argv = [sandbox.bwrap, *BASE]
    if workspace is not None:
        argv += ["--bind", workspace.tmp_dir, "/tmp"]
        for folder in under_tmp:
            argv += ["--tmpfs", folder]
    argv += view.argv()
    argv += ["--dev", "/dev", "--proc", "/proc"]
    for folder, how in request:
        argv += [how, folder, folder]
    if gpu > 0:  # GPU libraries read the devices' details in /sys
        argv += ["--ro-bind", "/sys", "/sys"]
        for device in sorted(glob.glob("/dev/nvidia*")):
            argv += ["--dev-bind", device, device]
    if shm_bytes > 0:
        argv += ["--size", str(shm_bytes)]
    argv += ["--tmpfs", "/dev/shm", "--remount-ro", "/dev", *view.sealing()]
    for folder in under_tmp if workspace is not None else ():
        argv += ["--remount-ro", folder]
    argv += ["--remount-ro", "/"]
    if workspace is not None:
        argv += ["--chdir", workspace.work_dir]
    return argv


def _request_folders(workspace: Workspace | None) -> list[tuple[str, str]]:
    """The request's folders with how each is bound: input read-only, the rest writable."""
    if workspace is None:
        return []
    writable = (workspace.output_dir, workspace.work_dir, workspace.tmp_dir)
    return [(workspace.input_dir, "--ro-bind"), *((f, "--bind") for f in writable)]


def _first_below(top: str, paths: list[str]) -> list[str]:
    """For the paths below `top`, the distinct folders one level below it that lead there."""
    prefix = top.rstrip("/") + "/"
    return sorted({prefix + p[len(prefix) :].split("/")[0] for p in paths if p.startswith(prefix)})
