"""Bounds on a request's head: its bytes and the time it takes to arrive.

httptools (llhttp) puts no limit on a request head. Uvicorn appends every piece of the URL and
every header to lists, and httptools joins a header value piece by piece, so a client sending
megabytes of header grows the server's memory with it and slows the event loop for everyone
(the joining costs the square of the size).

- **Head bytes**: every byte read from a request's first byte to the end of its headers, and
  the URL and header names and values the parser hands over (the trailers of a chunked body
  too, which are then dropped). Over `max_header_bytes` the request is answered `431` with the
  JSON error body and the connection closed, so what is held is bounded by the limit plus
  one read from the socket. Within a body, megabytes of chunk line (extensions) are cut off
  the same way.
- **Head time**: from a new connection, or from the first byte of a request, to the end of its
  headers. Over `header_timeout_seconds` (a client sending its head a byte at a time), `408`
  and the connection closed; a new connection that sends nothing is just closed.
- **Body after the answer**: a request answered before its body was read (401, 404, 415...)
  leaves uvicorn reading the rest to throw it away, and every byte that arrives puts off its
  keep-alive timeout, so a client trickling a byte a second would hold its connection for
  ever. The rest of the body gets `header_timeout_seconds` from the answer, then the
  connection is closed; so does a kept-alive connection that, after its answer, sends
  nothing but the blank lines the parser skips before a request.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from loguru import logger

from mis_app.http.base import RefusingProtocol
from mis_core.errors import HeadersTooLarge, UploadTimeout


class HeadBoundProtocol(RefusingProtocol):
    _head_bytes = 0  # of the current request's URL, headers and trailers
    _head_read = 0  # bytes read since the current request began, until its headers end
    _unaccounted = 0  # bytes read since the parser last handed anything over
    _accounted = False
    _consumed = 0  # bytes of the current read that belong to requests parsed (at least)
    _earlier = 0  # bytes of the current read that belong to the requests before this one
    _head_wire = 0  # the fewest bytes the current request's head can have taken on the wire
    _in_head = False  # a request has begun and its headers are not complete
    _over = False
    _head_since: float | None = None  # when the head being waited for began
    _drain_since: float | None = None  # when the answer went out with the body still coming
    _idle_since: float | None = None  # when the last answer went out, until the next request

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_since = self.loop.time()
        _HeadWatch.start(self)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._accounted = False
        self._consumed = self._earlier = 0
        super().data_received(data)  # a callback's exception reaches send_400_response
        if self._refused or self.transport.is_closing():
            return
        limit = self.limits.max_header_bytes
        if self._in_head:
            self._head_read += len(data) - self._earlier
            if self._head_read > limit:
                self._over = True
        else:  # in a body: only its chunk lines and trailers can be long without the parser
            self._unaccounted = 0 if self._accounted else self._unaccounted + len(data)
        if self._over or self._head_bytes + self._unaccounted > limit:
            self._refuse_head()

    # parser callbacks

    def on_message_begin(self) -> None:
        self._idle_since = None
        if self._refused:
            return
        super().on_message_begin()
        self._accounted = True
        self._head_bytes = self._head_read = self._head_wire = 0
        self._earlier = self._consumed  # the rest of this read is the new request's
        self._in_head = True
        if self._head_since is None:  # the first request's head is timed from the connection
            self._head_since = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self._accounted = True
        self._head_bytes += len(url)
        self._head_wire += len(url)
        if self._head_bytes > self.limits.max_header_bytes:
            self._over = True
        elif not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._accounted = True
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        self._head_wire += len(name) + len(value) + 3  # at least ":" and CRLF
        if self._head_bytes > self.limits.max_header_bytes:
            self._over = True
        elif self._in_head and not self._refused:
            super().on_header(name, value)  # trailers (after the head) are dropped

    def on_headers_complete(self) -> None:
        self._accounted = True
        if self._refused:
            return
        if self._over:
            self._refuse_head()
            return
        if self._in_head:  # this head's bytes in this read (bytes of earlier reads are counted)
            method = self.parser.get_method()
            wire = self._head_wire + len(method) + 14  # two spaces, "HTTP/1.1", two CRLFs
            self._consumed += max(0, wire - self._head_read)
        self._in_head = False
        self._head_since = None
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._accounted = True
        self._consumed += len(body)
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._accounted = True
        self._drain_since = None
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        if self.cycle is not None and self.cycle.more_body:
            self._drain_since = self.loop.time()  # answered before its body ended
        super().on_response_complete()
        if self._in_head and self._head_since is not None:
            self._head_since = self.loop.time()  # a pipelined head's time starts now
        elif not self._in_head:
            self._idle_since = self.loop.time()  # blank lines before the next one count too

    # the bounds

    def check_head(self, now: float) -> None:
        """Called about once a second: refuse a head that has taken too long, close a
        connection still sending the body of a request answered long ago."""
        drained = self._drain_since
        if drained is not None and now - drained >= self.limits.header_timeout_seconds:
            self._drain_since = None
            logger.warning("closed a connection still sending a body its answer did not need")
            self.transport.close()
            return
        idle = self._idle_since
        if idle is not None and now - idle >= self.limits.header_timeout_seconds:
            self.transport.close()  # answered, and no request since (blank lines at most)
            return
        since = self._head_since
        if since is None or now - since < self.limits.header_timeout_seconds:
            return
        if self.transport.is_closing() or self._refused:
            return
        if self._response_in_progress():
            return  # a pipelined head waits its turn; its time counts once the answer is out
        self._head_since = None
        if not self._in_head:
            self.transport.close()  # connected, sent nothing
            return
        seconds = self.limits.header_timeout_seconds
        self._refuse(
            UploadTimeout(
                f"The request's headers did not arrive within {seconds:g} seconds "
                "(server.header_timeout_seconds). Check the connection and retry."
            ),
        )

    def _refuse_head(self) -> None:
        limit = self.limits.max_header_bytes
        if self._in_head:
            self._refuse(
                HeadersTooLarge(
                    f"The request line and headers are larger than this service accepts "
                    f"({limit} bytes, server.max_header_bytes). Send fewer or shorter headers."
                ),
            )
        else:  # chunk lines or trailers of a body already being read: the request is cut
            logger.warning("closed a connection sending over {} bytes of body framing", limit)
            self._refused = True
            self.transport.close()


class _HeadWatch:
    """One timer per event loop, looking at every open connection's head about once a second:
    cheaper under a burst of connections than a timer armed and cancelled for each."""

    _running: ClassVar[set[asyncio.AbstractEventLoop]] = set()

    @classmethod
    def start(cls, protocol: HeadBoundProtocol) -> None:
        loop = protocol.loop
        if loop not in cls._running:
            cls._running.add(loop)
            loop.call_later(1.0, cls._tick, loop, protocol.connections)

    @classmethod
    def _tick(cls, loop: asyncio.AbstractEventLoop, connections: set[Any]) -> None:
        if not connections:  # nothing to watch: the next connection starts it again
            cls._running.discard(loop)
            return
        now = loop.time()
        for connection in list(connections):
            if isinstance(connection, HeadBoundProtocol):
                connection.check_head(now)
        loop.call_later(1.0, cls._tick, loop, connections)
