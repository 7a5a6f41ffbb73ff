"""The MAP's output, line by line, into MIS's log (tagged with the request id by the context).

Every backend hands its MAP's output here as raw chunks (a pipe, the container engine's log
stream, the pod's log): lines are cut at MAX_LINE, so a MAP that prints a huge line or no
newline at all is still logged, in pieces, and never held whole in memory. The last lines
are kept for the failure message.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterable

import anyio
from loguru import logger

MAX_LINE = 8192


class MapLog:
    def __init__(self, tail_lines: int, *, quiet: bool = False) -> None:
        """`quiet`: keep the tail only (a log read again for a failure message)."""
        self.tail: deque[str] = deque(maxlen=tail_lines)
        self._quiet = quiet
        self._log = logger.bind(source="map")
        self._pending = b""

    async def pump(self, chunks: AsyncIterable[bytes]) -> None:
        """Log each line of `chunks` until it ends (a closed or broken stream ends it too)."""
        try:
            async for data in chunks:
                self.feed(data)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            self.flush()

    def feed(self, data: bytes) -> None:
        *lines, self._pending = (self._pending + data).split(b"\n")
        while len(self._pending) > MAX_LINE:
            lines.append(self._pending[:MAX_LINE])
            self._pending = self._pending[MAX_LINE:]
        for raw in lines:
            for start in range(0, max(len(raw), 1), MAX_LINE):
                self.emit(raw[start : start + MAX_LINE].decode("utf-8", "replace"))

    def flush(self) -> None:
        """The last line, when the output did not end with a newline."""
        if self._pending:
            pending, self._pending = self._pending, b""
            self.emit(pending.decode("utf-8", "replace"))

    def emit(self, line: str) -> None:
        line = line.rstrip("\r")
        self.tail.append(line)
        if not self._quiet:
            self._log.info("{}", line)


async def last_lines(chunks: AsyncIterable[bytes], lines: int) -> tuple[str, ...]:
    """The last `lines` lines of `chunks`, cut like logged lines, without logging them."""
    tail = MapLog(lines, quiet=True)
    await tail.pump(chunks)
    return tuple(tail.tail)
