"""`mis serve`: uvicorn on MIS's own connections, with a graceful stop.

How connections are taken (MIS's HTTP/1.1 protocol with its bounds, as many connections as the
descriptors leave room for, TLS) is a `Listener` the bootstrap builds from the settings
(mis_app.bootstrap.connections); this module runs uvicorn on it.

On SIGTERM or SIGINT uvicorn closes its listening socket (new connections are refused) and
the idle connections, lets the requests in flight finish for up to `shutdown_grace_seconds`,
then cancels what is left: a cancelled request stops its MAP the clean way and deletes its
files (the app's shutdown waits for that, see mis_app.bootstrap.web), and MIS exits 0. A second
SIGINT stops at once.

Uvicorn re-raises the signal once it has stopped, so that whoever installed a handler before
it gets to act; MIS has nothing more to do then, and exits with 0 instead of dying of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import uvicorn
from loguru import logger

STARTUP_FAILED = 3
# How long a thread holding the GIL keeps it while another waits: unpacking and packing run
# Python on worker threads, and the event loop needs the GIL several times to answer one
# request; at Python's 5 ms, a busy answer during unpacking waited up to 39 ms (p99, 100,000
# small files), at 1 ms it is under 20 ms, with the same unpack and pack throughput.
GIL_SWITCH_SECONDS = 0.001
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@attrs.frozen
class Listener:
    """How the server takes connections, as the bootstrap builds it from the settings."""

    protocol: Callable[..., asyncio.Protocol]  # uvicorn's `http`: MIS's HTTP/1.1, TLS included
    backlog: int
    https: bool
    shutdown_grace_seconds: float


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in _SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(app: Any, listener: Listener, host: str, port: int) -> int:
    """Serve `app` until a signal stops it; the exit code."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # TLS is done by MIS's protocol, not by the event loop: see mis_app/http/tls.py
        http=listener.protocol,  # type: ignore[arg-type]
        backlog=listener.backlog,
        ws="none",  # no WebSocket routes; an upgrade would leave the protocol (and its budget)
        log_config=None,
        access_log=False,
        proxy_headers=False,  # the client address is MIS's to judge (server.trusted_proxies)
        timeout_graceful_shutdown=math.ceil(listener.shutdown_grace_seconds),
    )
    if listener.https:
        logger.info(
            "serving HTTPS (server.tls); MIS does the TLS handshakes itself, so uvicorn's "
            "'running on' line says http://"
        )
    sys.setswitchinterval(GIL_SWITCH_SECONDS)
    runner = _Server(config)
    runner.run()
    return 0 if runner.started else STARTUP_FAILED
