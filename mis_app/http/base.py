"""The base of MIS's HTTP/1.1 protocol: uvicorn's httptools protocol, and how a connection
is refused (a JSON error, then closed) when one of the bounds in this package says so."""

from __future__ import annotations

import json
import secrets
from typing import ClassVar

import attrs
from loguru import logger
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from mis_app.errors import STATUS_BY_CODE, error_body
from mis_app.request_info import find_request_info
from mis_core.errors import InvalidInput, MisError


@attrs.frozen
class ConnectionLimits:
    """The `server` settings of the same names (they state the defaults; the bootstrap builds
    this)."""

    max_header_bytes: int
    header_timeout_seconds: float
    download_idle_timeout_seconds: float
    download_timeout_seconds: float


class RefusingProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits]

    # Per-connection state; the class holds the initial value, so that a new connection
    # costs no more than uvicorn's own.
    _refused = False  # answered and closing: nothing more of what it sends is parsed

    def send_400_response(self, msg: str) -> None:
        """What the parser refuses (a malformed request line, header or chunk) gets the JSON
        error body like every other error, not uvicorn's plain text."""
        self._refuse(
            InvalidInput(
                "The request is not valid HTTP/1.1 (a malformed request line, header or chunk)."
            ),
        )

    def _response_in_progress(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete

    def _response_started(self) -> bool:
        return self._response_in_progress() and self.cycle.response_started

    def _refuse(self, error: MisError) -> None:
        """Answer with the JSON error (unless a response has started) and close."""
        self._refused = True
        info = find_request_info(self.cycle.scope) if self._response_in_progress() else None
        request_id = info.request_id if info is not None else secrets.token_hex(16)
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
