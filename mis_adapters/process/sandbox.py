"""The process backend's sandbox: bubblewrap (`bwrap`), where it works, around every MAP run.

Inside it the MAP has its own PID, network (loopback only), IPC, UTS, user and cgroup
namespaces and sees the host's file system read-only, minus what MIS must keep to itself:

- the payload folder (a read-only empty tmpfs), with only this request's `input/` (read-only),
  `output/`, `work/` and `tmp/` bound back in; `/tmp` is the request's `tmp/` folder;
- MIS's configuration file, tokens file, TLS key, kubeconfig and container engine socket
  (each covered by /dev/null, which the MAP cannot open: bubblewrap's binds are `nodev`),
  MIS's home folder and `/run` (empty read-only tmpfs: host services' sockets live there);
- a fresh `/dev` (null, zero, random, tty, ..., the GPUs when `gpu > 0`), read-only but for a
  `/dev/shm` no larger than the memory limit, and a `/proc` of its own processes only.

When its first process ends, every process in it is killed (the namespace's init goes), and
when MIS or the supervisor dies, `--die-with-parent` ends it.

Whatever MAP files the command names (its program, its script, a model folder) that lie in
MIS's home folder or in `/tmp` stay visible read-only: the first folder below the hidden one
that holds each is bound back in.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import attrs

from mis_adapters.process import limits

SandboxSetting = Literal["auto", "bubblewrap", "none"]

NAMESPACES = ("--unshare-all", "--die-with-parent", "--new-session")
BASE = (*NAMESPACES, "--cap-drop", "ALL", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc")


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


@attrs.frozen
class Hidden:
    """What of MIS a MAP must not see: folders become empty, files cannot be opened."""

    folders: tuple[str, ...] = ()
    files: tuple[str, ...] = ()


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
            [bwrap, *BASE, "--", "true"],
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
            f"bwrap failed ({said}); unprivileged user namespaces may be disabled "
            "(kernel.unprivileged_userns_clone, user.max_user_namespaces) or MIS runs in a "
            "container that forbids them"
        )
    return None


def hidden_paths(
    payload_root: str,
    files: Iterable[str | os.PathLike[str] | None],
    home: str | None,
) -> Hidden:
    """MIS's own files and folders, as the sandbox hides them (missing ones are skipped)."""
    folders = [os.path.abspath(payload_root), "/run"]
    if home and os.path.isabs(home) and os.path.isdir(home) and os.path.realpath(home) != "/":
        folders.append(os.path.realpath(home))
    kept: list[str] = []
    for path in (os.path.abspath(f) for f in files if f):
        if os.path.isdir(path):
            folders.append(path)
        elif os.path.exists(path):  # a file, or a socket such as the container engine's
            kept.append(path)
    return Hidden(folders=tuple(dict.fromkeys(folders)), files=tuple(dict.fromkeys(kept)))


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
            "process but its own, and sees the host's files read-only without the payload "
            "folder (only its request's input, read-only, and output), MIS's configuration, "
            "tokens file, TLS key, kubeconfig, home folder and /run; its /tmp is private",
            always,
        ]
    return [
        f"process sandbox: none ({chosen.reason}). NOT contained: the MAP runs as MIS's user "
        "with the host's network (MIS's own port included), can signal and trace MIS's "
        "processes, and can read and write whatever that user can: other requests' "
        "workspaces, the tokens file, the TLS key, the configuration",
        always,
    ]


@attrs.frozen
class Layout:
    """One request's folders, host paths (the sandbox shows them at the same paths)."""

    input_dir: str
    output_dir: str
    work_dir: str
    tmp_dir: str


def bwrap_argv(
    sandbox: Sandbox,
    layout: Layout,
    hidden: Hidden,
    map_files: Sequence[str],
    *,
    gpu: int,
    shm_bytes: int,
) -> list[str]:
    """The bwrap command line (up to `--`) for one MAP run.

    Order matters: a later mount covers an earlier one. Hidden folders go outer first, each
    followed by the MAP's own files bound back into it, so a hidden folder inside one that is
    bound back (MIS's home in /tmp) is hidden again; MIS's files and the payload folder come
    after all of them (a quick start keeps its payload folder in the checkout of the MAP).
    """
    payload, *others = hidden.folders
    layers = sorted([*others, "/tmp"], key=_depth)
    argv = [sandbox.bwrap, *BASE]
    for folder in layers:
        argv += ["--bind", layout.tmp_dir, "/tmp"] if folder == "/tmp" else ["--tmpfs", folder]
        for source in _bound_back(map_files, folder, layers):
            argv += ["--ro-bind", source, source]
    for path in hidden.files:
        if not _inside(path, [payload]):
            argv += ["--ro-bind", "/dev/null", path]
    argv += ["--tmpfs", payload]
    argv += ["--ro-bind", layout.input_dir, layout.input_dir]
    for folder in (layout.output_dir, layout.work_dir, layout.tmp_dir):
        argv += ["--bind", folder, folder]
    if gpu > 0:
        for device in sorted(glob.glob("/dev/nvidia*")):
            argv += ["--dev-bind", device, device]
    if shm_bytes > 0:
        argv += ["--size", str(shm_bytes)]
    argv += ["--tmpfs", "/dev/shm"]
    for folder in [payload, *others, "/dev"]:
        argv += ["--remount-ro", folder]
    argv += ["--chdir", layout.work_dir]
    return argv


def map_files(argv: Sequence[str], path: str | None) -> list[str]:
    """The absolute paths the MAP's command names (its program found on `path`, and each
    argument that is an existing path), with where their links lead."""
    found: list[str] = []
    program = shutil.which(argv[0], path=path) if argv else None
    for word in [program or "", *argv[1:]]:
        if os.path.isabs(word) and os.path.exists(word):
            found += [os.path.abspath(word), os.path.realpath(word)]
    return list(dict.fromkeys(found))


def conflicts(files: Sequence[str], hidden: Hidden) -> list[str]:
    """The MAP's own files that the sandbox would hide and cannot show: those in the payload
    folder or among MIS's hidden files (the home folder and /tmp are bound back)."""
    payload = hidden.folders[:1]
    return [f for f in files if _inside(f, payload) or f in hidden.files]


def _bound_back(files: Sequence[str], folder: str, layers: Sequence[str]) -> list[str]:
    """For each file whose innermost hidden folder is `folder`, the first path below `folder`
    that leads to it."""
    sources: list[str] = []
    for file in files:
        owners = [layer for layer in layers if _inside(file, [layer]) and file != layer]
        if owners and max(owners, key=len) == folder:
            sources.append(os.path.join(folder, Path(file).relative_to(folder).parts[0]))
    return sorted(set(sources))


def _inside(path: str, folders: Iterable[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def _depth(path: str) -> int:
    return len(Path(path).parts)
