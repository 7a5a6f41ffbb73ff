"""Skip-or-fail: a test that cannot run here skips on a developer's machine and fails in CI.

CI sets MIS_REQUIRE_ALL=1, where everything a test needs is installed: a missing tool there is
a broken runner, not a reason to pass quietly."""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType
from typing import NoReturn

import pytest

REQUIRE_ALL_VARIABLE = "MIS_REQUIRE_ALL"


def require_all() -> bool:
    """Whether this run must run every test (CI)."""
    return os.environ.get(REQUIRE_ALL_VARIABLE) == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip this test (or, called at a module's top, the whole module) for `reason`, or fail it
    under MIS_REQUIRE_ALL=1."""
    if require_all():
        pytest.fail(f"{reason} ({REQUIRE_ALL_VARIABLE}=1)")
    pytest.skip(reason, allow_module_level=True)


def require_tool(name: str) -> str:
    """The path of `name`; skip without it, or fail when CI sets MIS_REQUIRE_ALL=1."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"the {name!r} command is not installed")
    return path


def require_root(why: str) -> None:
    """Skip unless running as root (fail when CI sets MIS_REQUIRE_ALL=1); `why` says for what."""
    if os.geteuid() != 0:
        unavailable(f"needs root: {why}")


def require_module(name: str, install: str) -> ModuleType:
    """The module `name`, imported; where it is not installed skip (fail when CI sets
    MIS_REQUIRE_ALL=1). `install` says how to get it.

    pytest.importorskip's skip-or-fail: call it at a test module's top, before the imports
    that need `name`. A module that is there but fails to import is an error, never a skip."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is None or not f"{name}.".startswith(f"{error.name}."):
            raise  # `name` is there; something it imports is not: a broken installation
        unavailable(f"{name!r} is not installed: {install}")
