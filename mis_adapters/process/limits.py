"""What the process backend can enforce of `map.resources`, and how a breach is reported.

Memory: MIS runs as an ordinary user and cannot create cgroups on most hosts (a cgroup v1
hierarchy belongs to root; a cgroup v2 one needs a delegated subtree), so the limit is
`RLIMIT_DATA` on every process of the MAP (the supervisor sets it before the MAP starts and
children inherit it): an allocation past it fails. It bounds each process, not their sum; it
does not count files in tmpfs, shared memory mappings or the page cache. `/dev/shm` inside the
sandbox is no larger than the limit.

Processes: `RLIMIT_NPROC` counts every task of a user, so the supervisor sets it to what MIS's
user runs when the MAP starts plus `process.pids_limit`; the kernel does not apply it to root.

CPU: the MAP's numeric libraries are told the number of threads (`OMP_NUM_THREADS`, ...);
CPU time itself is not limited. GPUs: `CUDA_VISIBLE_DEVICES`.
"""

from __future__ import annotations

import re

from mis_core.model import Resources

# What an allocation that failed looks like in the last lines of a MAP's log.
_OUT_OF_MEMORY = re.compile(
    r"MemoryError|Cannot allocate memory|bad_alloc|Unable to allocate|out of memory"
    r"|OutOfMemoryError|can't allocate memory|not enough memory",
    re.IGNORECASE,
)
_GPU = re.compile(r"CUDA|GPU|cudaMalloc|device memory", re.IGNORECASE)

ENFORCEMENT = (
    "memory: a data limit (RLIMIT_DATA) of map.resources.memory on each MAP process, not on "
    "their sum; tmpfs files and shared memory are not counted (no cgroup: MIS cannot create "
    "one as an ordinary user); processes: process.pids_limit more than MIS's user runs "
    "(RLIMIT_NPROC, which binds every user but root)"
)


def memory_limit(resources: Resources) -> int:
    """The data limit in bytes for each MAP process (the one place that reads the quantity)."""
    return resources.memory.bytes


def ran_out_of_memory(log_tail: tuple[str, ...]) -> bool:
    """Whether a failed MAP says an allocation failed (and not on the GPU).

    The kernel does not tell which failed allocation hit RLIMIT_DATA, so the MAP's own words
    decide (Python's MemoryError, NumPy's "Unable to allocate", C++'s bad_alloc, ...).
    """
    return any(_OUT_OF_MEMORY.search(line) and not _GPU.search(line) for line in log_tail)


def memory_reason(resources: Resources, peak_kib: int) -> str:
    return (
        f"ran out of memory: the process backend limits each MAP process to "
        f"{resources.memory} of data (map.resources.memory; its largest process peaked at "
        f"{peak_kib / 1024:.0f} MiB resident); raise the limit or send a smaller input"
    )
