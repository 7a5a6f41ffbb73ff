"""bench/procstat.py on real processes: a helper "server" whose children burn CPU, hold
memory, or are left unreaped."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import procstat
from tests.harness.wait import wait_until

BURN = "import time\nwhile time.process_time() < 0.3: pass\n"  # 0.3 CPU seconds, then exit

# The "server": starts a child (which starts a grandchild, and waits for it) that burns CPU;
# reaps it or, with "keep", leaves it a zombie (WNOWAIT); then says "done" and waits.
SERVER = f"""
import os, subprocess, sys
burn = {BURN!r}
child = subprocess.Popen([sys.executable, "-c",
    "import subprocess, sys; subprocess.run([sys.executable, '-c', sys.argv[1]]); exec(sys.argv[1])",
    burn])
if sys.argv[1] == "keep":
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
else:
    child.wait()
print("done", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER, request.param],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "done\n"
    yield process
    assert process.stdin is not None
    process.stdin.close()
    process.wait(10)


@pytest.mark.parametrize("server", ["reap"], indirect=True)
def test_reaped_children_and_grandchildren_count(server: subprocess.Popen[str]) -> None:
    assert procstat.reaped(server.pid, timeout=5)
    assert procstat.tree(server.pid) == [server.pid]
    cpu = procstat.cpu(server.pid)
    assert cpu.children >= 0.55  # the child's 0.3 s and the grandchild's 0.3 s, in ticks
    assert cpu.total == cpu.own + cpu.children


@pytest.mark.parametrize("server", ["keep"], indirect=True)
def test_an_unreaped_child_is_seen_and_not_counted(server: subprocess.Popen[str]) -> None:
    assert len(procstat.children(server.pid)) == 1  # a zombie is still a child
    assert not procstat.reaped(server.pid, timeout=0.1)
    assert procstat.cpu(server.pid).children == 0


def test_peak_rss_outlives_the_memory_and_the_tree_is_summed() -> None:
    hold = "import sys; b = bytearray(40 << 20); b[::4096] = b'x' * len(b[::4096]); "
    code = (
        "import subprocess, sys\n"
        f"kid = subprocess.Popen([sys.executable, '-c', {hold + 'sys.stdin.read()'!r}],"
        " stdin=subprocess.PIPE)\n"
        f"exec({hold!r})\n"
        "del b\nprint('ready', flush=True)\nsys.stdin.read()\nkid.stdin.close()\nkid.wait()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        assert procstat.peak_rss(process.pid) >= 40 * procstat.MiB
        assert procstat.status_kib(process.pid, "VmRSS") * 1024 < 40 * procstat.MiB
        with procstat.TreeRss(process.pid, interval=0.01) as tree:
            wait_until(lambda: tree.peak >= 40 * procstat.MiB, 10, "the child's 40 MB, sampled")
        assert len(procstat.tree(process.pid)) == 2
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(10)
    assert procstat.status_kib(process.pid, "VmHWM") == 0  # gone: 0, not an error


def test_allowed_cpus_and_filesystem(tmp_path: Path) -> None:
    cpus = procstat.allowed_cpus(os.getpid())
    assert cpus["affinity"] == len(os.sched_getaffinity(0))
    assert 1 <= cpus["usable"] <= cpus["affinity"]  # type: ignore[operator]
    where = procstat.filesystem(tmp_path)
    assert where["type"]
    assert Path(where["mount"]) in [tmp_path, *tmp_path.parents]
