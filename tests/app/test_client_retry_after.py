"""Attack: a `Retry-After` made of characters Python calls digits but cannot read as a number.

Found: `mis infer` took a Retry-After for seconds when `str.isdigit()` said so, which it
says of superscripts (`²`, a single byte in the header's Latin-1); `float()` then failed and
the client ended in a traceback instead of saying the service is busy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mis_core.error_catalogue import Exit
from tests.app.test_client_hostile import hostile_server, json_error, run_infer, study

__all__ = ["study"]  # the fixture


@pytest.mark.parametrize("value", ["\xb2", "\xb9\xb2", "1\xb2"])
def test_a_retry_after_of_superscript_digits_is_no_number(
    tmp_path: Path, study: Path, value: str
) -> None:
    busy = json_error(500, "busy", "Another request is running.", **{"Retry-After": value})
    with hostile_server(busy) as server:
        result = run_infer(study, "-o", tmp_path / "o.zip", "--url", server.url)
    assert "Traceback" not in result.stderr
    assert result.returncode == Exit.BUSY, result.stderr
    assert "500 busy: Another request is running." in result.stderr
