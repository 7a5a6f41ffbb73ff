"""The audit channel: one JSON object per line, each chained to the line before it.

Every record carries `seq` (1, 2, ... along the chain) and `prev_sha256`, the SHA-256 of the
previous record's line as written (without its newline); the first line of a file chains to
the empty string. MIS appending to a file it finds not empty chains to its last line, so a
file holds one chain however many times MIS started. An edited line breaks the chain at the
next line; a removed one also leaves a gap in `seq` (`mis audit verify` tells which).

On standard output (`-`) each record is wrapped as `{"audit": {...}}`, so a log collector
can route it away from the log lines; the chain is over those lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

from loguru import logger

STDOUT = "-"
WRAPPER = "audit"  # the key that marks a record on standard output
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_TAIL_STEP = 64 * 1024
_SEQ_SEARCH_BYTES = 1024 * 1024  # records are small: the last one is within this of the end


def record_of(line: bytes) -> dict[str, Any] | None:
    """The audit record a line holds (wrapped or not), or None when it holds none."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    if isinstance(value, dict) and isinstance(value.get(WRAPPER), dict):
        value = value[WRAPPER]
    return value if isinstance(value, dict) else None


def last_line(path: Path) -> bytes:
    """The last line of `path` without its newline (b"" for an empty file), read from the end."""
    with open(path, "rb") as source:
        end = source.seek(0, os.SEEK_END)
        tail = b""
        position = end
        while position > 0:
            step = min(_TAIL_STEP, position)
            position -= step
            source.seek(position)
            tail = source.read(step) + tail
            body = tail[:-1] if tail.endswith(b"\n") else tail
            if b"\n" in body:
                return body.rsplit(b"\n", 1)[1]
        return tail[:-1] if tail.endswith(b"\n") else tail


def last_seq(path: Path) -> int:
    """The `seq` of the last record among the file's last lines (0 when none is there): a
    line cut short by a crash is not a record, and the chain counts on past it."""
    with open(path, "rb") as source:
        source.seek(max(0, source.seek(0, os.SEEK_END) - _SEQ_SEARCH_BYTES))
        lines = source.read().splitlines()
    for line in reversed(lines):
        seq = (record_of(line) or {}).get("seq")
        if isinstance(seq, int):
            return seq
    return 0


class AuditLog:
    """Appends records to `target` (a path, or `-` for standard output), flushing each."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._wrap = target == STDOUT
        self._prev = EMPTY_SHA256
        self._seq = 0
        self._failing = False
        if self._wrap:
            self._stream: IO[bytes] = sys.stdout.buffer
            return
        path = Path(target)
        try:
            ends_cleanly = True
            if path.is_file() and path.stat().st_size:
                line = last_line(path)
                self._prev = hashlib.sha256(line).hexdigest()
                self._seq = last_seq(path)
                with open(path, "rb") as existing:
                    existing.seek(-1, os.SEEK_END)
                    ends_cleanly = existing.read(1) == b"\n"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
            self._stream = open(fd, "ab", buffering=0)  # noqa: SIM115 - kept open while serving
            if not ends_cleanly:  # a line cut short (a crash mid-write): it stays, seen by verify
                self._stream.write(b"\n")
        except OSError as exc:
            raise AuditUnavailable(
                f"server.audit_file: cannot append to {target} ({exc.strerror}). Make its "
                "folder writable for MIS's user, or choose another path."
            ) from exc

    def write(self, record: dict[str, Any]) -> None:
        """Append `record` with its place in the chain. A failure to write is logged (once
        until it works again), never raised: the request it describes has already ended."""
        self._seq += 1
        chained = {**record, "seq": self._seq, "prev_sha256": self._prev}
        line = json.dumps({WRAPPER: chained} if self._wrap else chained, separators=(",", ":"))
        data = line.encode()
        try:
            self._stream.write(data + b"\n")
            self._stream.flush()
        except OSError as exc:
            self._seq -= 1
            if not self._failing:
                logger.error("could not write an audit record to {}: {}", self.target, exc)
            self._failing = True
            return
        if self._failing:
            logger.info("audit records are written to {} again", self.target)
        self._failing = False
        self._prev = hashlib.sha256(data).hexdigest()

    def close(self) -> None:
        if not self._wrap:
            self._stream.close()


class AuditUnavailable(Exception):
    """The audit file cannot be opened for appending; the message says what to do."""
