"""The HTTP/1.1 connection: uvicorn's httptools protocol with the bounds a public server needs.

httptools (llhttp) puts no limit on a request head. Uvicorn appends every piece of the URL and
every header to lists, and httptools joins a header value piece by piece, so a client sending
megabytes of header grows the server's memory with it and slows the event loop for everyone
(the joining costs the square of the size). Measured here before this protocol: a 64 MB
header block took the server from 54 to 118 MB and `/healthz` from milliseconds to 0.8 s.

This protocol adds three bounds, each acting before the application sees the request:

- **Head bytes**: every byte read from a request's first byte to the end of its headers, and
  the URL and header names and values the parser hands over (the trailers of a chunked body
  too, which are then dropped). Over `max_head_bytes` the request is answered `431` with the
  JSON error body and the connection closed, so what is held is bounded by the limit plus
  one read from the socket. Within a body, megabytes of chunk line (extensions) are cut off
  the same way.
- **Head time**: from a new connection, or from the first byte of a request, to the end of its
  headers. Over `head_timeout_seconds` (a client sending its head a byte at a time), `408`
  and the connection closed; a new connection that sends nothing is just closed.
- **Stalled downloads**: uvicorn's `send` waits while the transport's write buffer is over its
  high-water mark, i.e. while the client reads nothing. A buffer that stays full for
  `download_idle_timeout_seconds` gets the connection aborted; the application sees the
  client as gone, so the job is stopped, its files deleted and the slot freed.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any, ClassVar

import attrs
from loguru import logger
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from mis_app.errors import HeadersTooLarge, error_body
from mis_core.errors import InvalidInput, MisError, UploadTimeout


@attrs.frozen
class ConnectionLimits:
    max_head_bytes: int  # server.max_header_bytes
    head_timeout_seconds: float  # server.header_timeout_seconds
    download_idle_timeout_seconds: float  # server.download_idle_timeout_seconds


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
    _body_read = 0  # body bytes the parser handed over in the current read
    _earlier = 0  # bytes of the current read that belong to the request before
    _in_head = False  # a request has begun and its headers are not complete
    _over = False
    _refused = False
    _head_since: float | None = None  # when the head being waited for began
    _stall_timer: asyncio.TimerHandle | None = None

    # the connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_since = self.loop.time()
        _HeadWatch.start(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._accounted = False
        self._body_read = self._earlier = 0
        super().data_received(data)
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
        super().on_message_begin()
        self._accounted = True
        self._head_bytes = self._head_read = 0
        self._earlier = self._body_read  # the rest of this read is the new request's
        self._in_head = True
        if self._head_since is None:  # the first request's head is timed from the connection
            self._head_since = self.loop.time()

    def on_url(self, url: bytes) -> None:
        self._accounted = True
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_head_bytes:
            self._over = True
        elif not self._refused:
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._accounted = True
        self._head_bytes += len(name) + len(value) + 4  # ": " and CRLF
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
        self._in_head = False
        self._head_since = None
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._accounted = True
        self._body_read += len(body)
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._accounted = True
        if not self._refused:
            super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        """What the parser refuses (a malformed request line, header or chunk) gets the JSON
        error body like every other error, not uvicorn's plain text."""
        self._refuse(
            400,
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
            408,
            UploadTimeout(
                f"The request's headers did not arrive within {seconds:g} seconds "
                "(server.header_timeout_seconds). Check the connection and retry."
            ),
        )

    def _refuse_head(self) -> None:
        limit = self.limits.max_head_bytes
        if self._in_head:
            self._refuse(
                431,
                HeadersTooLarge(
                    f"The request line and headers are larger than this service accepts "
                    f"({limit} bytes, server.max_header_bytes). Send fewer or shorter headers."
                ),
            )
        else:  # chunk lines or trailers of a body already being read: the request is cut
            logger.warning("closed a connection sending over {} bytes of body framing", limit)
            self._refused = True
            self.transport.close()

    def _refuse(self, status: int, error: MisError) -> None:
        """Answer `status` with the JSON error (unless a response has started) and close."""
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
                STATUS_LINE[status],
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
        super().on_response_complete()
        if self._in_head and self._head_since is not None:
            self._head_since = self.loop.time()  # a pipelined head's time starts now

    def _download_stalled(self) -> None:
        self._stall_timer = None
        if self.transport.is_closing():
            return
        state = self.cycle.scope.get("state", {}) if self.cycle is not None else {}
        logger.bind(request_id=state.get("request_id", "-")).warning(
            "cut off: the client read nothing of the response for {:g} seconds "
            "(server.download_idle_timeout_seconds)",
            self.limits.download_idle_timeout_seconds,
        )
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
