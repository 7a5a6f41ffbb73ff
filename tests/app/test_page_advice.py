"""The page has a sentence, and what to do next, for every error code the API documents."""

from __future__ import annotations

import re
from pathlib import Path

from tests.app.test_openapi import readme_statuses

APP_JS = Path(__file__).parents[2] / "mis_app" / "static" / "app.js"


def test_every_documented_error_code_has_advice_on_the_page() -> None:
    script = APP_JS.read_text()
    table = script[
        script.index("const ADVICE = {") : script.index("\n};", script.index("const ADVICE"))
    ]
    advised = set(re.findall(r"^  (\w+): \[", table, re.M))
    assert set(readme_statuses()) - advised == set()
