"""A bound on open connections: a new connection beyond it is closed at once.

Each connection holds a descriptor; `descriptors.plan` leaves connections only what a
running request cannot need, so a flood of idle connections cannot make a study fail half
way. Refused connections are counted (`mis_refused_connections_total`) and logged at most
once a minute. Idle ones go on their own: one that sends nothing for
`server.header_timeout_seconds` is closed (head.py), one idle after an answer after uvicorn's
keep-alive timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import ClassVar

from loguru import logger

from mis_app.http.pacing import PacedProtocol

LOG_EVERY_SECONDS = 60.0


class ConnectionBudget:
    """How many connections are open, how many may be, and how many were refused."""

    def __init__(self, most: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.most = most
        self.open = 0
        self.refused = 0
        self._clock = clock
        self._logged_at: float | None = None
        self._unlogged = 0

    def take(self) -> bool:
        """Count a new connection in, or refuse it (False) when `most` are open."""
        if self.open < self.most:
            self.open += 1
            return True
        self.refused += 1
        self._unlogged += 1
        now = self._clock()
        if self._logged_at is None or now - self._logged_at >= LOG_EVERY_SECONDS:
            logger.warning(
                "closed {} new connection(s) at once: {} are open, the most this service "
                "accepts (server.max_connections), so that requests in flight keep the file "
                "descriptors they need. Idle connections are closed after "
                "server.header_timeout_seconds; this is logged at most once a minute and "
                "counted in mis_refused_connections_total",
                self._unlogged,
                self.open,
            )
            self._logged_at = now
            self._unlogged = 0
        return False

    def give_back(self) -> None:
        self.open -= 1


class BudgetedProtocol(PacedProtocol):
    budget: ClassVar[ConnectionBudget]
    _counted = False  # taken from the budget: given back when the connection ends

    _prepaid = False  # counted as it was accepted, before its TLS handshake (tls.py)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if not self._prepaid and not self.budget.take():
            self._refused = True  # whatever it sent meanwhile is not parsed
            transport.close()
            return
        self._counted = True
        super().connection_made(transport)

    def counted_already(self) -> None:
        self._prepaid = True

    @property
    def connected(self) -> bool:
        """Whether the connection reached this protocol (and gives its place back at the end)."""
        return self._counted

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._counted:
            return  # refused at once: uvicorn never knew it
        self.budget.give_back()
        super().connection_lost(exc)
