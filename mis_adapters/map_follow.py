"""The MAP's output, line by line, into MIS's log (tagged with the request id by the context).

The last lines are kept for the failure message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable

import anyio
from loguru import logger

MAX_LINE = 8192  # a MAP that prints no newlines still gets logged, in pieces


class MapLog:
    def __init__(self, tail_lines: int) -> None:
        self.tail: deque[str] = deque(maxlen=tail_lines)
        self._log = logger.bind(source="map")

    async def pump(self, chunks: AsyncIterable[bytes]) -> None:
        """Log each line of `chunks` until it ends (a closed or broken stream ends it too)."""
        pending = b""
        try:
            async for data in chunks:
                pending += data
                *lines, pending = pending.split(b"\n")
                while len(pending) > MAX_LINE:
                    lines.append(pending[:MAX_LINE])
                    pending = pending[MAX_LINE:]
                for raw in lines:
                    self.emit(raw.decode("utf-8", "replace"))
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        if pending:
            self.emit(pending.decode("utf-8", "replace"))

    def emit(self, line: str) -> None:
        line = line.rstrip("\r")
        self.tail.append(line)
        self._log.info("{}", line)
