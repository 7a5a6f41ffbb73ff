"""The real clock: monotonic time, and deadlines on the event loop's own clock."""

from __future__ import annotations

import time

import anyio


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    def deadline(self, seconds: float) -> anyio.CancelScope:
        return anyio.move_on_after(seconds)
