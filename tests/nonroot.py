"""Running MIS as a non-root user, as its image does.

Root bypasses permission bits, so anything about permissions, read-only folders or ownership
is only tested honestly with MIS dropped to another uid. As root (CI, these machines) MIS runs
under `setpriv` as uid/gid 10001 from a virtual environment built from Debian's
`/usr/bin/python3` (the Python under root's home is not reachable by other users) in a
world-readable temporary folder, with the repository installed into it. As any other user the
tests already run without privileges, and MIS runs from the test's own Python.

`NonRoot.workdir()` gives a folder that user can reach (pytest's own temporary folders are
private to root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.harness.repo import REPO
from tests.harness.unavailable import require_tool

UID = GID = 10001


class NonRoot:
    """Where and how MIS runs as the unprivileged user; one per test session."""

    def __init__(self, root: Path, python: str, prefix: list[str], uid: int) -> None:
        self.root = root
        self.python = python  # the Python that MIS (and a Python MAP) runs with
        self.prefix = prefix  # what drops privileges: setpriv …, or nothing
        self.uid = uid
        self._count = 0

    def workdir(self, name: str = "t") -> Path:
        """A fresh folder the unprivileged user can enter and write (mode 0700, its own)."""
        self._count += 1
        folder = self.root / f"{name}-{self._count}"
        folder.mkdir()
        os.chown(folder, self.uid, self.uid) if os.geteuid() == 0 else None
        folder.chmod(0o700)
        return folder

    def command(self, *argv: str) -> list[str]:
        return [*self.prefix, *argv]

    def remove(self) -> None:
        """Delete it all, in the background: a venv is thousands of files on a slow disk."""
        subprocess.Popen(["rm", "-rf", str(self.root)], start_new_session=True)


def make_nonroot() -> NonRoot:
    """Build the unprivileged environment (a minute on first use as root: a venv and pip)."""
    root = Path(tempfile.mkdtemp(prefix="mis-nonroot-"))
    root.chmod(0o755)
    if os.geteuid() != 0:
        return NonRoot(root, sys.executable, [], os.geteuid())
    setpriv = require_tool("setpriv")
    system_python = "/usr/bin/python3"
    if not Path(system_python).exists():
        require_tool("a Debian python3 at /usr/bin/python3")
    venv = root / "venv"
    subprocess.run([system_python, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin/python"), "-m", "pip", "install", "-q", f"{REPO}[example]"],
        check=True,
        timeout=900,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    # the test MAPs live in the repository, which that user may not be able to read
    shutil.copytree(REPO / "tests" / "maps", root / "maps")
    shutil.copytree(REPO / "examples", root / "examples")
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    prefix = [setpriv, f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "--"]
    return NonRoot(root, str(venv / "bin/python"), prefix, UID)


def maps_dir(nonroot: NonRoot) -> Path:
    """The test MAPs, where the unprivileged user can read them."""
    return nonroot.root / "maps" if os.geteuid() == 0 else REPO / "tests" / "maps"
