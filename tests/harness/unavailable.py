"""Skip-or-fail: a test that cannot run here skips on a developer's machine and fails in CI.

CI sets MIS_REQUIRE_ALL=1, where everything a test needs is installed: a missing tool there is
a broken runner, not a reason to pass quietly."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

REQUIRE_ALL_VARIABLE = "MIS_REQUIRE_ALL"


def require_all() -> bool:
    """Whether this run must run every test (CI)."""
    return os.environ.get(REQUIRE_ALL_VARIABLE) == "1"


def unavailable(reason: str) -> NoReturn:
    """Skip this test for `reason`, or fail it under MIS_REQUIRE_ALL=1."""
    if require_all():
        pytest.fail(f"{reason} ({REQUIRE_ALL_VARIABLE}=1)")
    pytest.skip(reason)


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
