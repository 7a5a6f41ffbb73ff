"""Logging: one line per event, each carrying the request id it belongs to.

`text` is for people; `json` writes one JSON object per line for log collectors. Lines the
MAP printed carry `source: map`: they are the MAP's words, passed on as it printed them except
for control characters. Uvicorn's own logging is routed here too.

Nothing a client or a MAP sends can forge or colour a line: every record's message, and every
string in its extra fields, has its control characters (CR, LF, ESC, the C1 set, Unicode line
separators) escaped as `\\xNN` / `\\uNNNN` before any sink sees it. Tracebacks show no
variable values (loguru's `diagnose` is off), so a token or a file name held in a local never
reaches the log.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
from typing import Any, TextIO

from loguru import logger

_TEXT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <7}</level> | "
    "{extra[request_id]} | {extra[source]: <3} | <level>{message}</level>"
)
# C0 controls, DEL, C1 controls, and the characters that some viewers take for a line break
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def clean(text: str) -> str:
    """`text` with every control character escaped, so that it stays on one line, uncoloured."""
    return _CONTROL.sub(_escape, text)


def clean_lines(text: str) -> str:
    """`text` with every control character escaped but its line breaks: for messages that are
    several lines by design (a failed MAP's last log lines), each line still its own."""
    return "\n".join(clean(line) for line in text.split("\n"))


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _clean_value(value: Any) -> Any:
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {key: _clean_value(item) for key, item in value.items()}
    return value


def _clean_record(record: Any) -> None:
    record["message"] = clean(record["message"])
    for key, value in record["extra"].items():
        record["extra"][key] = _clean_value(value)


def configure_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    sink_stream = stream or sys.stderr
    logger.remove()
    logger.configure(extra={"request_id": "-", "source": "mis"}, patcher=_clean_record)
    if fmt == "json":
        logger.add(
            _json_sink(sink_stream),
            level=level,
            format="{message}",
            diagnose=False,
            backtrace=False,
        )
    else:
        colorize = sink_stream.isatty()
        logger.add(
            sink_stream,
            level=level,
            format=_TEXT,
            colorize=colorize,
            diagnose=False,
            backtrace=False,
        )
    logging.basicConfig(handlers=[_ToLoguru()], level=level, force=True)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
    # one line per Docker Engine call is noise; MIS logs what the calls mean
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(level)))


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
            line["exception"] = "".join(traceback.format_exception(*record["exception"]))
        stream.write(json.dumps(line, default=str) + "\n")
        stream.flush()

    return write


class _ToLoguru(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.opt(exception=record.exc_info).log(level, record.getMessage())
