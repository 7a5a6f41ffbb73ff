"""File descriptors: how many MIS may open, and how many of them connections may take.

Every open connection holds a descriptor, and so does every file a request opens while it
unpacks the upload, runs the MAP (its pipes), packs the output (one per folder level, and the
large files being sent) and deletes its workspace. Without a bound on connections, a flood of
idle ones takes them all: the request in flight fails half way (EMFILE) and new connections
are dropped by the kernel's accept queue without a word. So MIS raises its own soft limit to
the hard one at start, and lets connections have only what is left after a reserve:

- `BASE_RESERVE` for the process itself (log, listening sockets, event loop, backend clients);
- `PER_REQUEST` for each request in flight (`server.max_concurrent`);
- the listen backlog: one turn of the event loop can accept that many connections before any
  of them is counted (and closed, when over the bound).
"""

from __future__ import annotations

import resource

import attrs
from loguru import logger

BASE_RESERVE = 64
PER_REQUEST = 256  # unpacking ~100, packing up to 128 folder levels and a dozen large files
MAX_BACKLOG = 2048  # uvicorn's default; smaller under a low descriptor limit (1/8 of it)
MIN_BACKLOG = 64
DEFAULT_MOST_CONNECTIONS = 4096  # a service of one request at a time needs far fewer
MIN_CONNECTIONS = 16


@attrs.frozen
class DescriptorPlan:
    limit: int  # RLIMIT_NOFILE (soft), once raised
    backlog: int
    reserve: int
    max_connections: int


def raise_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = _kernel_most(soft)
    if soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (OSError, ValueError) as exc:
            logger.warning(
                "could not raise the descriptor limit (RLIMIT_NOFILE) to {}: {}", hard, exc
            )
            return soft
        logger.info("raised the descriptor limit (RLIMIT_NOFILE) from {} to {}", soft, hard)
        return hard
    return soft


def plan(limit: int, capacity: int, configured: int | None) -> DescriptorPlan:
    """What connections may have of `limit` descriptors with `capacity` requests at once,
    and `configured` (server.max_connections; None: all that is left, up to a default)."""
    backlog = max(MIN_BACKLOG, min(MAX_BACKLOG, limit // 8))
    reserve = BASE_RESERVE + PER_REQUEST * capacity + backlog
    room = limit - reserve
    if room < MIN_CONNECTIONS:
        logger.error(
            "the descriptor limit (RLIMIT_NOFILE, {}) leaves too few for connections: {} are "
            "kept for {} request(s) at once; raise it (ulimit -n, LimitNOFILE, the container's "
            "nofile) to at least {}",
            limit,
            reserve,
            capacity,
            reserve + MIN_CONNECTIONS * 4,
        )
        room = MIN_CONNECTIONS
    most = min(room, DEFAULT_MOST_CONNECTIONS) if configured is None else configured
    if most > room:
        logger.warning(
            "server.max_connections={} would leave requests too few of the {} descriptors "
            "MIS may open; accepting at most {} connections",
            configured,
            limit,
            room,
        )
        most = room
    return DescriptorPlan(limit=limit, backlog=backlog, reserve=reserve, max_connections=most)


def _kernel_most(fallback: int) -> int:
    try:
        with open("/proc/sys/fs/nr_open") as source:
            return int(source.read())
    except (OSError, ValueError):
        return fallback
