"""The HTTP/1.1 connection: uvicorn's httptools protocol with the bounds a public server needs.

Each concern is one class in a chain, each acting before the application sees a request:
`head` (the request head's bytes and time, and idle new connections), `pipelining` (requests
waiting on one connection), `pacing` (clients reading their answer too slowly) and `budget`
(how many connections may be open, within the descriptors `descriptors` plans for). The
chain subclasses uvicorn's protocol class, whose internals it relies on:
tests/app/test_uvicorn_contract.py names each, and pyproject.toml pins uvicorn below the next
minor version.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

from mis_app.http.base import ConnectionLimits
from mis_app.http.budget import BudgetedProtocol, ConnectionBudget
from mis_app.http.tls import accepting

__all__ = ["ConnectionBudget", "ConnectionLimits", "protocol_class"]


def protocol_class(
    limits: ConnectionLimits, budget: ConnectionBudget, tls: ssl.SSLContext | None = None
) -> Callable[..., asyncio.Protocol]:
    """The protocol class for uvicorn's `http` setting, bound to `limits` and `budget`; with
    `tls`, a factory that does each connection's TLS handshake first (tls.py)."""
    http = type("MisHttpProtocol", (BudgetedProtocol,), {"limits": limits, "budget": budget})
    return http if tls is None else accepting(http, tls)
