"""The supervisor's view of a process tree, by children files and by a scan of /proc alike."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mis_adapters.process import process_tree
from tests.harness.wait import wait_until

TREE = ["sh", "sleep", "sleep"]  # the commands of the tree below, sorted


def command(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


@pytest.fixture
def tree() -> Iterator[subprocess.Popen[bytes]]:
    """sh → (sh → sleep, sleep): two levels below the shell, all alive."""
    shell = subprocess.Popen(["/bin/sh", "-c", "(sleep 30 & wait) & sleep 30 & wait"])
    wait_until(
        lambda: sorted(map(command, process_tree.descendants([shell.pid]))) == TREE,
        10,
        "the tree to start",  # each fork has exec'd
    )
    yield shell
    for pid, started in process_tree.descendants([shell.pid]).items():
        process_tree.kill_if_same(pid, started, 9)
    shell.kill()
    shell.wait()


@pytest.mark.parametrize("children_files", [True, False])
def test_descendants_are_the_whole_tree_with_their_start_times(
    tree: subprocess.Popen[bytes], children_files: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(process_tree, "_CHILDREN_FILES", children_files)
    found = process_tree.descendants([tree.pid])
    names = sorted(command(pid) for pid in found)
    assert names == ["sh", "sleep", "sleep"]
    assert all(started == process_tree.start_time(pid) for pid, started in found.items())


def test_a_reused_pid_is_not_signalled(tree: subprocess.Popen[bytes]) -> None:
    [(pid, started)] = [
        (pid, started)
        for pid, started in process_tree.descendants([tree.pid]).items()
        if command(pid) == "sh"
    ]
    assert not process_tree.kill_if_same(pid, started - 1, 9)  # another process's start time
    assert process_tree.start_time(pid) == started  # still alive
    assert process_tree.kill_if_same(pid, started, 9)


THREAD_FORKS = """
import subprocess, sys, threading, time
def spawn():
    subprocess.Popen(["sleep", "30"])
    subprocess.Popen(["/bin/sh", "-c", "sleep 30 & wait"])
    time.sleep(30)  # alive: its children stay its own, listed in its task's children file
thread = threading.Thread(target=spawn)
thread.start()
sys.stdout.write("started\\n"); sys.stdout.flush()
thread.join()
"""


def names(pids: dict[int, int]) -> list[str]:
    found = []
    for pid in pids:
        try:
            found.append(command(pid))
        except OSError:
            continue
    return found


@pytest.mark.parametrize("children_files", [True, False])
def test_children_of_a_thread_that_is_not_the_main_one_are_found(
    children_files: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A MAP's worker thread starts processes: they are that thread's children (listed in
    /proc/PID/task/TID/children of its own TID, not the main thread's)."""
    monkeypatch.setattr(process_tree, "_CHILDREN_FILES", children_files)
    process = subprocess.Popen(
        [sys.executable, "-c", THREAD_FORKS], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "started\n"
        wait_until(
            lambda: sorted(names(process_tree.descendants([process.pid]))) == TREE,
            10,
            "the thread's processes to be found",
        )
        threads = os.listdir(f"/proc/{process.pid}/task")
        main = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert len(threads) == 2
        assert main == []  # really under the other thread
    finally:
        for pid, started in process_tree.descendants([process.pid]).items():
            process_tree.kill_if_same(pid, started, 9)
        process.kill()
        process.wait()
