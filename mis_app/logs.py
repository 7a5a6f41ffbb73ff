"""Logging: one line per event, each carrying the request id it belongs to.

`text` is for people; `json` writes one JSON object per line for log collectors. Lines the
MAP printed carry `source: map`. Uvicorn's own logging is routed here too.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import Any, TextIO

from loguru import logger

_TEXT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <7}</level> | "
    "{extra[request_id]} | {extra[source]: <3} | <level>{message}</level>"
)


def configure_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    sink_stream = stream or sys.stderr
    logger.remove()
    logger.configure(extra={"request_id": "-", "source": "mis"})
    if fmt == "json":
        logger.add(_json_sink(sink_stream), level=level, format="{message}")
    else:
        colorize = sink_stream.isatty()
        logger.add(sink_stream, level=level, format=_TEXT, colorize=colorize)
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
