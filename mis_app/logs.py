"""Logging: one line per event, each carrying the request id it belongs to.

`text` is for people; `json` writes one JSON object per line for log collectors. Lines the
MAP printed carry `source: map`: they are the MAP's words, passed on as it printed them except
for control characters, up to each request's budget (mis_adapters.map_follow). Uvicorn's own
logging is routed here too.

Nothing a client or a MAP sends can forge or colour a line: one record is one line, and no
control character (CR, LF, ESC, the C1 set, Unicode line separators) is written raw. The text
sink escapes them, in the message and in every string of the extra fields, as `\\xNN` /
`\\uNNNN`; the JSON sink leaves its strings to JSON's own escapes (`\\u001b`), so there a
real ESC and the four characters `\\x1b` that a MAP printed stay apart. Tracebacks show no
variable values (they are formatted by `traceback`, and loguru's `diagnose` is off), so a
token or a file name held in a local never reaches the log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from typing import Any, TextIO

from loguru import logger

_LEVEL_COLOURS = {"ERROR": "31", "CRITICAL": "31;1", "WARNING": "33", "SUCCESS": "32"}
# C0 controls, DEL, C1 controls, and the characters that some viewers take for a line break
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean(text: str) -> str:
    """`text` with every control character escaped, so that it stays on one line, uncoloured."""
    return CONTROL_CHARACTERS.sub(_escape, text)


def clean_lines(text: str) -> str:
    """`text` with every control character escaped but its line breaks: for messages that are
    several lines by design (a failed MAP's last log lines), each line still its own."""
    return "\n".join(clean(line) for line in text.split("\n"))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def configure_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    sink_stream = stream or sys.stderr
    logger.remove()
    logger.configure(extra={"request_id": "-", "source": "mis"})
    # MIS's own sinks escape what they write; the records stay as logged, for other sinks
    # that clean them their own way (the page's live log)
    sink = _json_sink(sink_stream) if fmt == "json" else _text_sink(sink_stream)
    logger.add(sink, level=level, format="{message}", diagnose=False, backtrace=False)
    logging.basicConfig(handlers=[_ToLoguru()], level=level, force=True)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # one line per Docker Engine call is noise; MIS logs what the calls mean
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _traceback(record: Any) -> str:
    """The record's traceback, with no variable values."""
    return "".join(traceback.format_exception(*record["exception"])).rstrip("\n")


def _exception(record: Any) -> str:
    """The traceback, if any, each line escaped."""
    if record["exception"] is None:
        return ""
    return clean_lines(_traceback(record))


def _text_sink(stream: TextIO) -> Any:
    colour = stream.isatty()

    def write(message: Any) -> None:
        record = message.record
        extra = record["extra"]
        when = record["time"].strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        level = f"{record['level'].name: <7}"
        text = clean(record["message"])
        if colour:
            when = f"\x1b[32m{when}\x1b[0m"
            code = _LEVEL_COLOURS.get(record["level"].name)
            if code:
                level, text = f"\x1b[{code}m{level}\x1b[0m", f"\x1b[{code}m{text}\x1b[0m"
        request_id = clean(str(extra.get("request_id", "-")))
        source = clean(str(extra.get("source", "mis")))
        line = f"{when} | {level} | {request_id} | {source: <3} | {text}\n"
        if exception := _exception(record):
            line += exception + "\n"
        stream.write(line)
        stream.flush()

    return write


def _json_sink(stream: TextIO) -> Any:
    def write(message: Any) -> None:
        record = message.record
        line = {
            "time": record["time"].isoformat(),
            "level": record["level"].name,
            "message": record["message"],
            **record["extra"],
        }
        if record["exception"] is not None:
            line["exception"] = _traceback(record)
        # ASCII only: control characters, the C1 set and line separators as \uNNNN; DEL is
        # the one JSON leaves raw (it is found only inside strings)
        text = json.dumps(line, default=str).replace("\x7f", "\\u007f")
        stream.write(text + "\n")
        stream.flush()

    return write


class _ToLoguru(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info).log(level, record.getMessage())
