"""`process.sandbox`: what MIS says and does where bubblewrap works, and where it does not.

A `bwrap` that fails as it does where user namespaces are disabled stands in for such a host:
a script named bwrap, first on MIS's PATH.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import yaml

from tests.containment.probes import require_bubblewrap
from tests.harness.command import mis_command

NO_USERNS = "bwrap: No permissions to create new namespace, likely because the kernel does not allow non-privileged user namespaces."


def broken_bwrap(folder: Path) -> dict[str, str]:
    """An environment whose PATH finds a bwrap that fails like one without user namespaces."""
    folder.mkdir()
    fake = folder / "bwrap"
    fake.write_text(f"#!/bin/sh\necho '{NO_USERNS}' >&2\nexit 1\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIS_")}
    return {**env, "PATH": f"{folder}{os.pathsep}{env.get('PATH', '')}"}


def config_file(tmp_path: Path, sandbox: str) -> Path:
    config = {
        "server": {"payload_dir": str(tmp_path / "payload")},
        "map": {"command": [sys.executable, "-c", "pass"]},
        "process": {"sandbox": sandbox},
    }
    path = tmp_path / "mis.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("command", ["serve", "config"])
def test_bubblewrap_asked_for_but_not_working_stops_start_up_naming_the_key(
    tmp_path: Path, command: str
) -> None:
    config = str(config_file(tmp_path, "bubblewrap"))
    argv = (
        ["serve", "--config", config]
        if command == "serve"
        else ["config", "check", "--config", config]
    )
    result = mis_command(*argv, env=broken_bwrap(tmp_path / "bin"))
    assert result.returncode == 2
    assert "process.sandbox: bubblewrap does not work here" in result.stderr
    assert "No permissions to create new namespace" in result.stderr
    assert "set process.sandbox to auto or none" in result.stderr


def test_auto_without_a_working_bubblewrap_says_what_is_not_contained(tmp_path: Path) -> None:
    config = config_file(tmp_path, "auto")
    result = mis_command(
        "config", "check", "--config", str(config), env=broken_bwrap(tmp_path / "bin")
    )
    assert result.returncode == 0, result.stderr
    assert "# process sandbox: none (bwrap failed (bwrap: No permissions" in result.stderr
    assert "NOT contained: the MAP runs as MIS's user with the host's network" in result.stderr
    assert "RLIMIT_DATA" in result.stderr
    assert "sandbox: auto" in result.stdout


def test_auto_with_a_working_bubblewrap_says_what_is_contained(tmp_path: Path) -> None:
    require_bubblewrap()
    result = mis_command("config", "check", "--config", str(config_file(tmp_path, "auto")))
    assert result.returncode == 0, result.stderr
    assert "# process sandbox: bubblewrap. The MAP has no network" in result.stderr
    assert "NOT contained" not in result.stderr
