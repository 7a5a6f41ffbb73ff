"""require_module: skip where a module is missing, fail in CI, never hide a broken one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness.unavailable import REQUIRE_ALL_VARIABLE, require_module

MISSING = "mis_test_no_such_module"


def test_an_installed_module_is_imported() -> None:
    assert require_module("json", "standard library") is json


@pytest.mark.parametrize("name", [MISSING, f"{MISSING}.inner"])
def test_a_missing_module_skips_the_whole_test_module_on_a_developers_machine(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REQUIRE_ALL_VARIABLE, raising=False)
    with pytest.raises(pytest.skip.Exception, match="pip install it") as skipped:
        require_module(name, "pip install it")
    assert skipped.value.allow_module_level  # called at a module's top, as importorskip is


def test_a_missing_module_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ALL_VARIABLE, "1")
    with pytest.raises(pytest.fail.Exception, match=REQUIRE_ALL_VARIABLE):
        require_module(MISSING, "pip install it")


def test_a_module_that_is_there_but_cannot_import_what_it_needs_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(REQUIRE_ALL_VARIABLE, raising=False)
    (tmp_path / "mis_test_broken.py").write_text(f"import {MISSING}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match=MISSING):
        require_module("mis_test_broken", "pip install it")
