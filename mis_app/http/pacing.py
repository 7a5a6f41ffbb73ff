"""Bounds on how slowly a client may read its answer.

- **Stalled downloads**: uvicorn's `send` waits while the transport's write buffer is over its
  high-water mark, i.e. while the client reads slower than the server writes. A buffer that
  does not drain to its low-water mark for `download_idle_timeout_seconds` gets the
  connection aborted; the application sees the client as gone, so the job is stopped, its
  files deleted and the slot freed.
- **Slow downloads**: a client reading just enough, just often enough, to keep the idle
  timer from firing (~53 KB/s with the defaults) would hold the slot for hours on a large
  result. A response still being sent `download_timeout_seconds` after the client first fell
  behind (the write buffer first filled) is cut off the same way. A client that keeps up
  never starts the clock: then the server, not the client, sets the pace.
"""

from __future__ import annotations

import asyncio

from loguru import logger

from mis_app.http.pipelining import PipelineBoundProtocol
from mis_app.request_info import find_request_info


class PacedProtocol(PipelineBoundProtocol):
    _stall_timer: asyncio.TimerHandle | None = None
    _download_timer: asyncio.TimerHandle | None = None  # the response's total bound

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._stall_timer, self._download_timer):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

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

    def on_response_complete(self) -> None:
        if self._download_timer is not None:  # the next response gets its own bound
            self._download_timer.cancel()
            self._download_timer = None
        super().on_response_complete()

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
        info = find_request_info(self.cycle.scope) if self.cycle is not None else None
        logger.bind(request_id=info.request_id if info is not None else "-").warning(
            message, seconds
        )
        self.transport.abort()
