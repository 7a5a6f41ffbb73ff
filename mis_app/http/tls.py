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
import math
import ssl
from asyncio.sslproto import SSLProtocol
from collections.abc import Callable
from typing import Any, cast

from mis_app.http.budget import BudgetedProtocol


class TlsAccepting(asyncio.Protocol):
    """A new connection, counted at once: it hands itself to asyncio's TLS layer, which
    hands the HTTP protocol the connection once the handshake is done."""

    def __init__(self, http: BudgetedProtocol, context: ssl.SSLContext) -> None:
        self.http = http
        self.context = context

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        raw = cast(asyncio.Transport, transport)  # uvloop's are no subclass of it
        if not self.http.budget.take():
            raw.close()
            return
        self.http.counted_already()
        handshake = self.http.loop.create_future()
        handshake.add_done_callback(self._handshake_done)
        secure = SSLProtocol(
            self.http.loop,
            self.http,
            self.context,
            handshake,
            server_side=True,
            ssl_handshake_timeout=math.ceil(min(self.http.limits.header_timeout_seconds, 60)),
        )
        # At once, in this call: what the client has sent (its ClientHello) is TLS's
        raw.set_protocol(secure)
        secure.connection_made(raw)

    def _handshake_done(self, handshake: asyncio.Future[None]) -> None:
        """A handshake that failed, timed out or lost its connection never reached the HTTP
        protocol, which gives the connection's place back when it ends: this does."""
        if not handshake.cancelled():
            handshake.exception()  # seen: a failed handshake is the client's affair
        if not self.http.connected:
            self.http.budget.give_back()


def accepting(
    http_class: type[BudgetedProtocol], context: ssl.SSLContext
) -> Callable[..., asyncio.Protocol]:
    """uvicorn's protocol factory for TLS connections of `http_class`."""

    def create(**kwargs: Any) -> asyncio.Protocol:
        return TlsAccepting(http_class(**kwargs), context)

    return create
