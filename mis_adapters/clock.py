"""The real clock: monotonic time and event-loop sleeps."""

from __future__ import annotations

import time

import anyio


class MonotonicClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
