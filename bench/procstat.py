"""What a server process costs, read from outside it in /proc: CPU time with its children's,
peak memory, its process tree, the CPUs it may use, and the filesystem a folder is on.

CPU: /proc/PID/stat's utime + stime are the process's own (every thread's); cutime + cstime
are those of its children that it has waited for, each with the children *they* waited for.
The supervisor waits for the MAP and MIS waits for the supervisor, so once a request's
children are reaped, their CPU time is in MIS's cutime + cstime; a child still running (or
reaped by nobody) is not, which is why `reaped` waits for the tree to be empty first.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path

import attrs

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024


@attrs.frozen
class Cpu:
    """CPU seconds: the process's own threads, and its reaped children's (with theirs)."""

    own: float
    children: float

    @property
    def total(self) -> float:
        return self.own + self.children

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(self.own - other.own, self.children - other.children)


def cpu(pid: int) -> Cpu:
    # the command name may hold spaces and parentheses: the fields start after the last ")"
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return Cpu((utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS)


def status_kib(pid: int, key: str) -> int:
    """A `kB` field of /proc/PID/status (VmHWM, VmRSS), 0 where the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes: its whole life, every thread."""
    return status_kib(pid, "VmHWM") * 1024


def children(pid: int) -> list[int]:
    """The process's children (of any of its threads), running or not yet reaped."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def tree(pid: int) -> list[int]:
    """The process and all its descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            todo += children(current)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return pids


def reaped(pid: int, timeout: float = 60) -> bool:
    """Wait until the process has no children left (so their CPU time is in its cutime);
    False if some remain after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while children(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class TreeRss:
    """Samples the summed RSS of a process and its descendants (the supervisor, the MAP, any
    worker processes) every `interval` seconds, in a thread; `peak` is the largest sum seen.
    Sampled, so a short spike can fall between samples; VmHWM of each process is exact."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> TreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                total = sum(status_kib(p, "VmRSS") for p in tree(self.pid)) * 1024
            except (FileNotFoundError, ProcessLookupError):
                continue
            self.peak = max(self.peak, total)


def allowed_cpus(pid: int) -> dict[str, int | float | None]:
    """The CPUs `pid` may use: its affinity mask, and its cgroup's CPU quota (v2 `cpu.max`
    or v1 `cpu.cfs_quota_us`, the tightest along its cgroup path) where one is set."""
    affinity = len(os.sched_getaffinity(pid))
    quota = _cgroup_quota(pid)
    usable = affinity if quota is None else min(affinity, max(1, int(quota)))
    return {"affinity": affinity, "cgroup_quota": quota, "usable": usable}


def _cgroup_quota(pid: int) -> float | None:
    root = Path("/sys/fs/cgroup")
    quotas: list[float] = []
    files: tuple[str, ...]
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: the unified hierarchy
            base, files = root, ("cpu.max",)
        elif "cpu" in controllers.split(","):
            base, files = root / controllers, ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        folder = base / path.lstrip("/")
        while True:
            quota = _quota_in(folder, files)
            if quota is not None:
                quotas.append(quota)
            if folder == base:
                break
            folder = folder.parent
    return min(quotas) if quotas else None


def _quota_in(folder: Path, files: tuple[str, ...]) -> float | None:
    try:
        if len(files) == 1:
            quota, period = (folder / files[0]).read_text().split()
        else:
            quota, period = ((folder / f).read_text().strip() for f in files)
    except (FileNotFoundError, ValueError, PermissionError):
        return None
    if quota in ("max", "-1"):
        return None
    return int(quota) / int(period)


def filesystem(path: Path) -> dict[str, str]:
    """The mount a folder is on (the longest mount point above it) and its file system type."""
    path = path.resolve()
    best = ("", "", "")
    for line in Path("/proc/mounts").read_text().splitlines():
        device, point, kind = line.split()[:3]
        point = point.replace("\\040", " ")
        if (path == Path(point) or Path(point) in path.parents) and len(point) > len(best[1]):
            best = (device, point, kind)
    return {"mount": best[1], "type": best[2]}


@attrs.frozen
class Machine:
    """The whole machine's CPU time so far (/proc/stat), in seconds: busy (user, nice,
    system, interrupts), waiting for I/O, and stolen by the hypervisor."""

    busy: float
    iowait: float
    steal: float

    def __sub__(self, other: Machine) -> Machine:
        return Machine(self.busy - other.busy, self.iowait - other.iowait, self.steal - other.steal)


def machine() -> Machine:
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _, iowait, irq, softirq, steal = fields[:8]
    return Machine(
        (user + nice + system + irq + softirq) / CLOCK_TICKS,
        iowait / CLOCK_TICKS,
        steal / CLOCK_TICKS,
    )


def own_cpu() -> float:
    """CPU seconds of this process (every thread) and its reaped children so far."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


class Noise:
    """What the rest of the machine did during a measurement: CPU seconds busy beyond the
    measured processes' and this one's (the client), I/O wait and steal. A run that shared
    the cores with someone else's work shows it here."""

    def __enter__(self) -> Noise:
        self._machine, self._own = machine(), own_cpu()
        self.measured = 0.0  # set by the caller: the CPU seconds it accounts for itself
        return self

    def __exit__(self, *exc: object) -> None:
        used = machine() - self._machine
        self.result = {
            "others_cpu_seconds": round(used.busy - self.measured - (own_cpu() - self._own), 2),
            "iowait_seconds": round(used.iowait, 2),
            "steal_seconds": round(used.steal, 2),
        }


class Costs:
    """What the work this process does from now on costs: wall and CPU seconds, peak RSS
    (for the micro-benches, each in a fresh process)."""

    def __init__(self) -> None:
        self.idle_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.started = time.perf_counter()
        self.cpu = time.process_time()

    def report(self) -> dict[str, float]:
        return {
            "seconds": round(time.perf_counter() - self.started, 2),
            "cpu_seconds": round(time.process_time() - self.cpu, 2),
            "idle_rss_mb": round(self.idle_mb, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
