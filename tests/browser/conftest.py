"""Headless Chromium (Debian's package) driven by Playwright, and where screenshots go."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_ALL, require_tool
from tests.e2e.server import REPO

# Playwright cannot download its own browser here; these flags keep Chromium off the network.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("MIS_ARTIFACTS", REPO / ".artifacts")) / "screenshots"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running while it is open, which
    would stop the async tests that come after it."""
    chromium = require_tool("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if REQUIRE_ALL:
            pytest.fail("playwright is not installed (MIS_REQUIRE_ALL=1)")
        pytest.skip("playwright is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """Opens pages in one fresh browser context (own session storage), closed afterwards."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1000, "height": 900})
    context.set_default_timeout(20_000)
    yield context.new_page
    context.close()


def screenshot(page: Any, name: str) -> Path:
    """Save the whole page as an artifact of the test run."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
