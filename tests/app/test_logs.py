"""MIS's log sinks: one record is one line, whatever it holds, and tracebacks hold no values."""

from __future__ import annotations

import io
import json

import pytest
from loguru import logger

from mis_app.logs import clean, configure_logging

HOSTILE = "GET /a\r\n2026-01-01 | ERROR | forged\x1b[31m\x07\x85\u2028end"


def test_clean_escapes_every_control_character_and_keeps_the_rest() -> None:
    assert clean(HOSTILE) == (
        "GET /a\\x0d\\x0a2026-01-01 | ERROR | forged\\x1b[31m\\x07\\x85\\u2028end"
    )
    assert clean("série 1/IM1.dcm\ttab") == "série 1/IM1.dcm\\x09tab"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_one_record_is_one_line_and_a_traceback_shows_no_values(fmt: str) -> None:
    out = io.StringIO()
    configure_logging("INFO", fmt, out)
    try:
        logger.bind(access={"path": HOSTILE}).info(HOSTILE)

        def check(token: str) -> None:
            raise ValueError("the check failed\x1b[2J")

        presented = "-".join(("s3cret", "token", "value"))  # not in any source line
        try:
            check(presented)
        except ValueError:
            logger.exception("unexpected error")
    finally:
        configure_logging("INFO", "text")
    text = out.getvalue()
    assert "s3cret-token-value" not in text  # diagnose is off: no variable values
    assert "\x1b" not in text
    assert "\r" not in text
    lines = text.splitlines()
    assert sum("forged" in line for line in lines) == 1
    if fmt == "json":
        # JSON's own escapes: the raw line holds none of them, the record each as it was
        assert "\\u001b[31m\\u0007\\u0085\\u2028end" in lines[0]
        records = [json.loads(line) for line in lines]
        assert records[0]["message"] == records[0]["access"]["path"] == HOSTILE
        assert "ValueError: the check failed\x1b[2J" in records[1]["exception"]
    else:
        assert lines[0].endswith(f"| - | mis | {clean(HOSTILE)}")
        assert "ValueError: the check failed\\x1b[2J" in text


def test_the_json_log_tells_a_real_escape_from_the_same_text_typed() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", out)
    try:
        logger.bind(source="map").info("\x1b[31m and \\x1b[31m and \x7f and \\x7f")
    finally:
        configure_logging("INFO", "text")
    [line] = out.getvalue().splitlines()
    assert "\\u001b[31m and \\\\x1b[31m and \\u007f and \\\\x7f" in line
    assert line.isascii()
    assert line.isprintable()
    assert json.loads(line)["message"] == "\x1b[31m and \\x1b[31m and \x7f and \\x7f"
