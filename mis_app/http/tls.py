"""TLS done per connection by MIS, so that a connection counts from the moment it is accepted.

With the event loop's own TLS (uvicorn's `ssl` argument), the protocol, and with it the
connection budget and the head timer, sees a connection only once its handshake is done,
and the loop gives up on an unfinished handshake after 60 s: a flood of connections that
never sent a ClientHello took every descriptor MIS had, uncounted and unlogged, and every
new connection failed. Here a new connection is counted (or refused beyond the bound) at
once, its handshake must end within `header_timeout_seconds`, and only then does the HTTP
protocol take it over, already counted; a failed handshake gives its place back.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import Any, cast

from mis_app.http.budget import BudgetedProtocol

_HANDSHAKES: set[asyncio.Task[None]] = set()  # running, kept from the garbage collector


class TlsAccepting(asyncio.Protocol):
    """A new connection until its handshake is done; then its HTTP protocol's."""

    def __init__(self, http: BudgetedProtocol, context: ssl.SSLContext) -> None:
        self.http = http
        self.context = context
        self._early = b""  # what arrived between the handshake's end and the handover
        self._lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's are no subclass of it
        if not self.http.budget.take():
            transport.close()
            return
        transport.pause_reading()  # the ClientHello waits for the TLS layer
        task = self.http.loop.create_task(self._handshake(transport))
        _HANDSHAKES.add(task)
        task.add_done_callback(_HANDSHAKES.discard)

    def data_received(self, data: bytes) -> None:
        self._early += data

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True

    async def _handshake(self, transport: asyncio.Transport) -> None:
        handed_over = False
        try:
            secure = await self.http.loop.start_tls(
                transport,
                self,
                self.context,
                server_side=True,
                ssl_handshake_timeout=self.http.limits.head_timeout_seconds,
            )
            if self._lost or secure is None:
                return
            secure.set_protocol(self.http)
            self.http.counted_already()
            handed_over = True
            self.http.connection_made(secure)
            if self._early:
                self.http.data_received(self._early)
        except (OSError, RuntimeError):  # ssl.SSLError, a reset, the handshake's timeout
            transport.close()  # a failed or timed-out handshake: nothing to answer
        finally:
            if not handed_over:
                self.http.budget.give_back()


def accepting(
    http_class: type[BudgetedProtocol], context: ssl.SSLContext
) -> Callable[..., asyncio.Protocol]:
    """uvicorn's protocol factory for TLS connections of `http_class`."""

    def create(**kwargs: Any) -> asyncio.Protocol:
        return TlsAccepting(http_class(**kwargs), context)

    return create
