"""The MAP's output, line by line, into MIS's log (tagged with the request id by the context).

Every backend hands its MAP's output here as raw chunks (a pipe, the container engine's log
stream, the pod's log): lines are cut at MAX_LINE, so a MAP that prints a huge line or no
newline at all is still logged, in pieces, and never held whole in memory. A chunk's lines
are handled in batches with the event loop given a turn between them, so a MAP that floods
its output cannot keep MIS from answering (health probes included).

MIS's log keeps a request's lines up to a budget (server.map_log_max_bytes), then one line
at the end that says how many it left out; a run of blank lines is logged as its first and
a count, and a line that a carriage return rewrote (a progress bar) as its last state. The
last lines are kept, as printed and whatever the budget, for the failure message.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import AsyncIterable, Sequence

import anyio
import anyio.lowlevel
from loguru import logger

MAX_LINE = 8192
# A failed MAP's last lines, in its error message: a fact of MIS's answer, no setting (the
# lines are cut at MAX_LINE, so the message stays bounded; MIS's log has its own budget).
LOG_TAIL_LINES = 20
# Lines handled before the event loop gets a turn: fewer while they are being logged
BATCH = 256
LOGGED_BATCH = 32
# What a logged line costs the budget besides its text: the time, level and ids MIS's log
# adds; and for each character outside printable ASCII, the room of a `\uNNNN` escape.
LINE_COST = 128
WIDE_COST = 5
_WIDE = re.compile(r"[^ -~]")


class MapLog:
    def __init__(self, *, max_bytes: int, quiet: bool = False) -> None:
        """`max_bytes`: the request's share of MIS's log (server.map_log_max_bytes); `quiet`:
        keep the tail only (a log read again for a failure message), logging nothing."""
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self._quiet = quiet
        self._log = logger.bind(source="map")
        self._pending = b""
        self._max_bytes = max_bytes
        self._left = max_bytes  # of the budget
        self._full = False  # a line did not fit: nothing more is logged
        self._blank = False  # the last line handled was blank
        self._blanks = 0  # blank lines after it, not logged
        self.dropped_lines = 0
        self.dropped_bytes = 0

    async def pump(self, chunks: AsyncIterable[bytes]) -> None:
        """Log each line of `chunks` until it ends (a closed or broken stream ends it too)."""
        try:
            async for data in chunks:
                pieces, start = self._cut(data), 0
                while start < len(pieces):
                    end = start + (BATCH if self._full or self._quiet else LOGGED_BATCH)
                    self._handle(pieces[start:end])
                    start = end
                    await anyio.lowlevel.checkpoint()
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            self.flush()

    def flush(self) -> None:
        """The last line, when the output did not end with a newline; then what was left out."""
        if self._pending:
            pending, self._pending = self._pending, b""
            self._handle([pending])
        if self._quiet:
            return
        self._end_blank_run()
        if self.dropped_lines:
            self._log.warning(
                "{} more lines of the MAP's output ({} bytes) were not logged: MIS logs up to "
                "server.map_log_max_bytes ({} bytes) of each request's",
                self.dropped_lines,
                self.dropped_bytes,
                self._max_bytes,
            )
            self.dropped_lines = self.dropped_bytes = 0

    def emit(self, line: str) -> None:
        """One line the MAP printed, decoded."""
        self.tail.append(line.rstrip("\r"))
        if not self._quiet and (self._full or not self._log_line(line)):
            self._drop([line.encode()])

    def _cut(self, data: bytes) -> list[bytes]:
        """The whole lines in the output so far, each cut into pieces of MAX_LINE or less."""
        *lines, self._pending = (self._pending + data).split(b"\n")
        if max(map(len, lines), default=0) > MAX_LINE:
            lines = [raw[at : at + MAX_LINE] for raw in lines for at in _starts(raw)]
        while len(self._pending) > MAX_LINE:
            lines.append(self._pending[:MAX_LINE])
            self._pending = self._pending[MAX_LINE:]
        return lines

    def _handle(self, pieces: Sequence[bytes]) -> None:
        """Lines as cut: the last ones into the tail, each into the log while it has room."""
        last = pieces[max(len(pieces) - LOG_TAIL_LINES, 0) :]
        self.tail.extend(_decode(raw).rstrip("\r") for raw in last)
        if self._quiet:
            return
        for index, raw in enumerate(pieces):
            if self._full or not self._log_line(_decode(raw)):
                self._drop(pieces[index:])
                return

    def _log_line(self, line: str) -> bool:
        """Log `line` (or count it in a run of blank ones); False if the budget has no room."""
        text = _last_state(line)
        blank = not text.strip()
        if blank and self._blank:
            self._blanks += 1
            return True
        self._end_blank_run()
        if _cost(text) > self._left:
            return False
        self._blank = blank
        self._write(text)
        return True

    def _end_blank_run(self) -> None:
        if self._blanks:
            blanks, self._blanks = self._blanks, 0
            self._write(f"… {blanks} more blank lines")

    def _write(self, text: str) -> None:
        self._left -= _cost(text)
        self._log.info("{}", text)

    def _drop(self, pieces: Sequence[bytes]) -> None:
        if not self._full:
            self._full = True
            self._end_blank_run()
        self.dropped_lines += len(pieces)
        self.dropped_bytes += sum(map(len, pieces))


def _last_state(line: str) -> str:
    """What a terminal shows of a line that carriage returns rewrote: its last non-blank part."""
    if "\r" not in line:
        return line
    parts = [part for part in line.split("\r") if part.strip()]
    return parts[-1] if parts else ""


def _cost(text: str) -> int:
    """About what `text` adds to MIS's log, escapes and the line's other fields included."""
    wide = 0 if text.isascii() and text.isprintable() else len(_WIDE.findall(text))
    return len(text) + LINE_COST + WIDE_COST * wide


def _starts(raw: bytes) -> range:
    return range(0, max(len(raw), 1), MAX_LINE)


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


async def last_lines(chunks: AsyncIterable[bytes]) -> tuple[str, ...]:
    """The last LOG_TAIL_LINES lines of `chunks`, cut like logged lines, without logging them."""
    tail = MapLog(max_bytes=0, quiet=True)
    await tail.pump(chunks)
    return tuple(tail.tail)
