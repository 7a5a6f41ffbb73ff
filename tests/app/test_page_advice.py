"""The page has a sentence, and what to do next, for every error code: it reads them from the
service's catalogue at /openapi.json rather than keeping a copy of its own."""

from __future__ import annotations

import re
from pathlib import Path

from mis_app.openapi import openapi
from mis_core.error_catalogue import CATALOGUE

APP_JS = Path(__file__).parents[2] / "mis_app" / "static" / "app.js"


def test_every_error_code_has_advice_for_the_page_in_the_openapi_description() -> None:
    advice = openapi(protect_metrics=True)["x-errors"]
    assert set(advice) == {row.code for row in CATALOGUE}
    for code, said in advice.items():
        assert said["title"], code
        assert said["advice"], code


def test_the_page_reads_its_advice_from_the_openapi_description() -> None:
    script = APP_JS.read_text()
    assert 'fetch("/openapi.json"' in script
    assert 'spec["x-errors"]' in script
    own = script[
        script.index("const PAGE_ADVICE = {") : script.index("\n};", script.index("PAGE_ADVICE"))
    ]
    assert not set(re.findall(r"^  (\w+): \[", own, re.M)) & {row.code for row in CATALOGUE}
