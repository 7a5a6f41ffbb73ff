"""`mis serve`: uvicorn with MIS's connection bounds and a graceful stop.

At start MIS raises its descriptor limit and bounds open connections so that a flood of
them cannot take the descriptors a request in flight needs (mis_app.http.descriptors).

On SIGTERM or SIGINT uvicorn closes its listening socket (new connections are refused) and
the idle connections, lets the requests in flight finish for up to `shutdown_grace_seconds`,
then cancels what is left: a cancelled request stops its MAP the clean way and deletes its
files (the app's shutdown waits for that, see `wait_for_requests`), and MIS exits 0. A second
SIGINT stops at once.

Uvicorn re-raises the signal once it has stopped, so that whoever installed a handler before
it gets to act; MIS has nothing more to do then, and exits with 0 instead of dying of it.
"""

from __future__ import annotations

import contextlib
import math
import signal
import ssl
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from loguru import logger

from mis_app.http import ConnectionBudget, ConnectionLimits, descriptors, protocol_class
from mis_app.settings import Settings
from mis_app.state import app_state

STARTUP_FAILED = 3
# How long a thread holding the GIL keeps it while another waits: unpacking and packing run
# Python on worker threads, and the event loop needs the GIL several times to answer one
# request; at Python's 5 ms, a busy answer during unpacking waited up to 39 ms (p99, 100,000
# small files), at 1 ms it is under 20 ms, with the same unpack and pack throughput.
GIL_SWITCH_SECONDS = 0.001
CLEANUP_SECONDS = 60  # for cancelled requests to stop their MAP and delete their files
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(app: Any, settings: Settings, host: str, port: int) -> int:
    """Serve `app` until a signal stops it; the exit code."""
    server = settings.server
    limits = ConnectionLimits(
        max_head_bytes=int(server.max_header_bytes),
        head_timeout_seconds=server.header_timeout_seconds,
        download_idle_timeout_seconds=server.download_idle_timeout_seconds,
        download_timeout_seconds=server.download_timeout_seconds,
    )
    plan = descriptor_plan(settings)
    budget = ConnectionBudget(plan.max_connections)
    app_state(app).metrics.watch_connections(budget)
    try:
        tls = _tls_context(settings)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        logger.error("cannot serve HTTPS with server.tls's files: {}", exc)
        return STARTUP_FAILED
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # TLS is done by MIS's protocol, not by the event loop: see mis_app/http/tls.py
        http=protocol_class(limits, budget, tls),  # type: ignore[arg-type]
        backlog=plan.backlog,
        ws="none",  # no WebSocket routes; an upgrade would leave the protocol (and its budget)
        log_config=None,
        access_log=False,
        proxy_headers=False,  # the client address is MIS's to judge (server.trusted_proxies)
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_seconds),
    )
    if tls is not None:
        logger.info(
            "serving HTTPS (server.tls); MIS does the TLS handshakes itself, so uvicorn's "
            "'running on' line says http://"
        )
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    runner = _Server(config)
    runner.run()
    return 0 if runner.started else STARTUP_FAILED


def descriptor_plan(settings: Settings) -> descriptors.DescriptorPlan:
    """Raise the descriptor limit, and bound connections to what requests leave of it."""
    server = settings.server
    plan = descriptors.plan(
        descriptors.raise_limit(), server.max_concurrent, server.max_connections
    )
    logger.info(
        "accepting at most {} connections (server.max_connections) of {} file descriptors, "
        "{} kept for requests and the listen backlog of {}",
        plan.max_connections,
        plan.limit,
        plan.reserve,
        plan.backlog,
    )
    return plan


async def wait_for_requests(in_flight: Callable[[], int], seconds: float) -> None:
    """Wait (up to `seconds`) until no request is in flight: requests a stop cancelled are
    still stopping their MAP and deleting their files, and need the backend open for it."""
    with anyio.move_on_after(seconds):
        while in_flight():  # noqa: ASYNC110 (the core keeps a count, not an event; once per stop)
            await anyio.sleep(0.02)


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context (as uvicorn would make it), or None without server.tls."""
    tls = settings.server.tls
    if tls.cert_file is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls.cert_file), _optional(tls.key_file))
    return context


def _optional(path: Path | None) -> str | None:
    return None if path is None else str(path)
