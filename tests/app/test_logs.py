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
        records = [json.loads(line) for line in lines]
        assert records[0]["access"]["path"] == clean(HOSTILE)
        assert "ValueError: the check failed\\x1b[2J" in records[1]["exception"]
    else:
        assert lines[0].endswith(f"| - | mis | {clean(HOSTILE)}")
        assert "ValueError: the check failed\\x1b[2J" in text
