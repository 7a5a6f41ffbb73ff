"""How the server takes connections, from the settings: MIS's HTTP/1.1 protocol with its bounds
(mis_app.http), as many connections as the descriptors leave room for (their metrics too), TLS,
the listen backlog and the shutdown grace. `mis_app.serve` hands them to uvicorn."""

from __future__ import annotations

import ssl
from pathlib import Path

from loguru import logger

from mis_app.http import ConnectionBudget, ConnectionLimits, descriptors, protocol_class
from mis_app.metrics import Metrics
from mis_app.serve import Listener
from mis_app.settings import Settings
from mis_app.settings.mapping import from_settings


class TlsUnusable(Exception):
    """server.tls's files do not make a TLS context (unreadable, not a certificate and its key)."""


def listener(settings: Settings, metrics: Metrics) -> Listener:
    """How the server takes connections; the open ones are counted in `metrics`. Raises
    TlsUnusable when server.tls's files cannot serve HTTPS."""
    limits = from_settings(ConnectionLimits, settings.server)
    plan = descriptor_plan(settings)
    budget = ConnectionBudget(plan.max_connections)
    metrics.watch_connections(budget)
    try:
        tls = tls_context(settings)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise TlsUnusable(f"cannot serve HTTPS with server.tls's files: {exc}") from exc
    return Listener(
        protocol=protocol_class(limits, budget, tls),
        backlog=plan.backlog,
        https=tls is not None,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
    )


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


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The server's TLS context (as uvicorn would make it), or None without server.tls."""
    tls = settings.server.tls
    if tls.cert_file is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(tls.cert_file), _optional(tls.key_file))
    return context


def _optional(path: Path | None) -> str | None:
    return None if path is None else str(path)
