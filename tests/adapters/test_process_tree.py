"""The supervisor's view of a process tree, by children files and by a scan of /proc alike."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mis_adapters.process import supervisor


def command(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[bytes]]:
    """sh → (sh → sleep, sleep): two levels below the shell, all alive."""
    shell = subprocess.Popen(["/bin/sh", "-c", "(sleep 30 & wait) & sleep 30 & wait"])
    deadline = time.monotonic() + 10
    while len(supervisor.descendants([shell.pid])) < 3:
        assert time.monotonic() < deadline, "the tree did not start"
        time.sleep(0.01)
    yield shell
    for pid, started in supervisor.descendants([shell.pid]).items():
        supervisor.kill_if_same(pid, started, 9)
    shell.kill()
    shell.wait()


@pytest.mark.parametrize("children_files", [True, False])
def test_descendants_are_the_whole_tree_with_their_start_times(
    tree: subprocess.Popen[bytes], children_files: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supervisor, "_CHILDREN_FILES", children_files)
    found = supervisor.descendants([tree.pid])
    names = sorted(command(pid) for pid in found)
    assert names == ["sh", "sleep", "sleep"]
    assert all(started == supervisor.start_time(pid) for pid, started in found.items())


def test_a_reused_pid_is_not_signalled(tree: subprocess.Popen[bytes]) -> None:
    [(pid, started)] = [
        (pid, started)
        for pid, started in supervisor.descendants([tree.pid]).items()
        if command(pid) == "sh"
    ]
    assert not supervisor.kill_if_same(pid, started - 1, 9)  # another process's start time
    assert supervisor.start_time(pid) == started  # still alive
    assert supervisor.kill_if_same(pid, started, 9)
