"""The HTTP/1.1 connection: uvicorn's httptools protocol with the bounds a public server needs.

httptools (llhttp) puts no limit on a request head. Uvicorn appends every piece of the URL and
every header to lists, and httptools joins a header value piece by piece, so a client sending
megabytes of header grows the server's memory with it and slows the event loop for everyone
(the joining costs the square of the size). Measured here before this protocol: a 64 MB
header block took the server from 54 to 118 MB and `/healthz` from milliseconds to 0.8 s.

This protocol adds five bounds, each acting before the application sees the request:

- **Head bytes**: every byte read from a request's first byte to the end of its headers, and
  the URL and header names and values the parser hands over (the trailers of a chunked body
  too, which are then dropped). Over `max_head_bytes` the request is answered `431` with the
  JSON error body and the connection closed, so what is held is bounded by the limit plus
  one read from the socket. Within a body, megabytes of chunk line (extensions) are cut off
  the same way.
- **Pipelined requests**: asyncio hands over up to 256 KiB per read and httptools parses all
  of it in one call, running uvicorn's callbacks for every request in it: one read of 10,000
  `GET /healthz` requests kept the event loop busy for a tenth of a second per connection,
  and 200 such connections kept `/healthz` silent for over a minute. A connection may have
  `MAX_PIPELINED` requests waiting behind the one being answered; the next one stops the
  parser (a callback that raises ends its run) and the connection is closed.
- **Head time**: from a new connection, or from the first byte of a request, to the end of its
  headers. Over `head_timeout_seconds` (a client sending its head a byte at a time), `408`
  and the connection closed; a new connection that sends nothing is just closed.
- **Stalled downloads**: uvicorn's `send` waits while the transport's write buffer is over its
  high-water mark, i.e. while the client reads slower than the server writes. A buffer that
  does not drain to its low-water mark for `download_idle_timeout_seconds` gets the
  connection aborted; the application sees the
  client as gone, so the job is stopped, its files deleted and the slot freed.
- **Slow downloads**: a client reading just enough, just often enough, to keep the idle
  timer from firing (~53 KB/s with the defaults) would hold the slot for hours on a large
  result. A response still being sent `download_timeout_seconds` after the client first fell
  behind (the write buffer first filled) is cut off the same way. A client that keeps up
  never starts the clock: then the server, not the client, sets the pace.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any, ClassVar

import attrs
from loguru import logger
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from mis_app.errors import STATUS_BY_CODE, error_body
from mis_core.errors import HeadersTooLarge, InvalidInput, MisError, UploadTimeout

MAX_PIPELINED = 16  # requests a connection may have waiting behind the one being answered


@attrs.frozen
class ConnectionLimits:
    max_head_bytes: int  # server.max_header_bytes
    head_timeout_seconds: float  # server.header_timeout_seconds
    download_idle_timeout_seconds: float  # server.download_idle_timeout_seconds
    download_timeout_seconds: float  # server.download_timeout_seconds


def protocol_class(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's `http` setting, bound to `limits`."""
    return type("MisHttpProtocol", (BoundedHttpToolsProtocol,), {"limits": limits})


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits]

    # Per-connection state; the class holds the initial values, so that a new connection
    # costs no more than uvicorn's own.
    _head_bytes = 0  # of the current request's URL, headers and trailers
    _head_read = 0  # bytes read since the current request began, until its headers end
    _unaccounted = 0  # bytes read since the parser last handed anything over
    _accounted = False
    _consumed = 0  # bytes of the current read that belong to requests parsed (at least)
    _earlier = 0  # bytes of the current read that belong to the requests before this one
    _head_wire = 0  # the fewest bytes the current request's head can have taken on the wire
    _in_head = False  # a request has begun and its headers are not complete
    _over = False
    _refused = False
    _flooded = False  # a request came with MAX_PIPELINED already waiting
    _head_since: float | None = None  # when the head being waited for began
    _stall_timer: asyncio.TimerHandle | None = None
    _download_timer: asyncio.TimerHandle | None = None  # the response's total bound

    # the connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_since = self.loop.time()
        _HeadWatch.start(self)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._stall_timer, self._download_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._accounted = False
        self._consumed = self._earlier = 0
        super().data_received(data)  # a callback's exception reaches send_400_response
        if self._refused or self.transport.is_closing():
            return
        limit = self.limits.max_head_bytes
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
        if self._refused:
            return
        if len(self.pipeline) >= MAX_PIPELINED:
            self._flooded = True
            raise _PipelineFull  # ends the parser's run over this read: nothing more is parsed
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
        if self._head_bytes > self.limits.max_head_bytes:
            self._over = True
        elif not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._accounted = True
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF
        self._head_wire += len(name) + len(value) + 3  # at least ":" and CRLF
        if self._head_bytes > self.limits.max_head_bytes:
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
        if not self._refused:
            super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """What the parser refuses (a malformed request line, header or chunk) gets the JSON
        error body like every other error, not uvicorn's plain text."""
        if self._flooded:  # the parser stopped on our own callback's exception
            self._close_flooded()
            return
        self._refuse(
            InvalidInput(
                "The request is not valid HTTP/1.1 (a malformed request line, header or chunk)."
            ),
        )

    # flow control: the transport says when its write buffer is full and when it drained

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(
                self.limits.download_idle_timeout_seconds, self._download_stalled
            )
        if self._download_timer is None and self._response_in_progress():
            self._download_timer = self.loop.call_later(
                self.limits.download_timeout_seconds, self._download_too_long
            )

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    # the bounds

    def _response_in_progress(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _response_started(self) -> bool:
        return self._response_in_progress() and self.cycle.response_started

    def check_head(self, now: float) -> None:
        """Called about once a second: refuse a head that has taken too long."""
        since = self._head_since
        if since is None or now - since < self.limits.head_timeout_seconds:
            return
        if self.transport.is_closing() or self._refused:
            return
        if self._response_in_progress():
            return  # a pipelined head waits its turn; its time counts once the answer is out
        self._head_since = None
        if not self._in_head:
            self.transport.close()  # connected, sent nothing
            return
        seconds = self.limits.head_timeout_seconds
        self._refuse(
            UploadTimeout(
                f"The request's headers did not arrive within {seconds:g} seconds "
                "(server.header_timeout_seconds). Check the connection and retry."
            ),
        )

    def _refuse_head(self) -> None:
        limit = self.limits.max_head_bytes
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

    def _close_flooded(self) -> None:
        """Close a connection that pipelined too many requests: the answers owed cannot be
        sent out of order, and parsing more of what it sent is the attack."""
        if self._refused:
            return
        self._refused = True
        logger.warning("closed a connection with over {} pipelined requests waiting", MAX_PIPELINED)
        self.transport.close()

    def _refuse(self, error: MisError) -> None:
        """Answer with the JSON error (unless a response has started) and close."""
        self._refused = True
        state = self.cycle.scope["state"] if self._response_in_progress() else {}
        request_id = state.get("request_id") or secrets.token_hex(16)
        logger.bind(request_id=request_id).warning("refused: {} ({})", error.code, error.message)
        if self._response_in_progress():
            # the application reading this request sees the client gone, and answers nothing
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        if not self._response_started():
            body = json.dumps(error_body(error, request_id)).encode()
            head = [
                STATUS_LINE[STATUS_BY_CODE[error.code]],
                *(
                    name + b": " + value + b"\r\n"
                    for name, value in self.server_state.default_headers
                ),
                b"content-type: application/json\r\n",
                b"content-length: %d\r\n" % len(body),
                b"x-request-id: " + request_id.encode() + b"\r\n",
                b"connection: close\r\n\r\n",
            ]
            self.transport.write(b"".join(head) + body)
        self.transport.close()

    def on_response_complete(self) -> None:
        if self._download_timer is not None:  # the next response gets its own bound
            self._download_timer.cancel()
            self._download_timer = None
        super().on_response_complete()
        if self._in_head and self._head_since is not None:
            self._head_since = self.loop.time()  # a pipelined head's time starts now

    def _download_stalled(self) -> None:
        self._stall_timer = None
        self._cut_off(
            "cut off: the client read too little of the response for the server's send buffer "
            "to drain in {:g} seconds (server.download_idle_timeout_seconds)",
            self.limits.download_idle_timeout_seconds,
        )

    def _download_too_long(self) -> None:
        self._download_timer = None
        self._cut_off(
            "cut off: the client was still reading the response {:g} seconds after it fell "
            "behind (server.download_timeout_seconds)",
            self.limits.download_timeout_seconds,
        )

    def _cut_off(self, message: str, seconds: float) -> None:
        """Abort the connection: the application sees the client gone, stops the job,
        deletes its files and frees the slot."""
        if self.transport.is_closing():
            return
        state = self.cycle.scope.get("state", {}) if self.cycle is not None else {}
        logger.bind(request_id=state.get("request_id", "-")).warning(message, seconds)
        self.transport.abort()


class _HeadWatch:
    """One timer per event loop, looking at every open connection's head about once a second:
    cheaper under a burst of connections than a timer armed and cancelled for each."""

    _running: ClassVar[set[asyncio.AbstractEventLoop]] = set()

    @classmethod
    def start(cls, protocol: BoundedHttpToolsProtocol) -> None:
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
            if isinstance(connection, BoundedHttpToolsProtocol):
                connection.check_head(now)
        loop.call_later(1.0, cls._tick, loop, connections)


class _PipelineFull(Exception):
    """Raised from a parser callback to stop httptools parsing the rest of a read."""
