"""Headless Chromium (Debian's package) driven by Playwright, and where screenshots go.

Pages fail their test when a script throws or the page's Content-Security-Policy blocks
something. axe-core (npm, `npm ci` in this folder) checks the accessibility of each state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.repo import REPO
from tests.harness.unavailable import require_tool, unavailable

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
AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Module-scoped: Playwright's sync API keeps an event loop running while it is open, which
    would stop the async tests that come after it."""
    chromium = require_tool("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    """Opens pages in one fresh browser context (own session storage), closed afterwards."""
    context = browser.new_context(accept_downloads=True, viewport={"width": 1000, "height": 900})
    context.set_default_timeout(20_000)
    problems: list[str] = []

    def open_page() -> Any:
        page = context.new_page()
        page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
        page.on(
            "console",
            lambda message: (
                problems.append(f"console: {message.text}")
                if "Content Security Policy" in message.text
                else None
            ),
        )
        return page

    yield open_page
    context.close()
    assert problems == []


@pytest.fixture
def axe(new_page: Any) -> Path:
    """axe-core's script; skips without it (fails in CI, which installs it)."""
    if not AXE.exists():
        unavailable("axe-core is not installed (run npm ci in tests/browser)")
    return AXE


def serious_violations(page: Any, axe: Path) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    if not page.evaluate("typeof window.axe === 'object'"):
        session = page.context.new_cdp_session(page)  # the page's CSP forbids injected scripts
        session.send("Runtime.evaluate", {"expression": axe.read_text()})
    found = page.evaluate(
        """async () => (await axe.run(document, { resultTypes: ["violations"] })).violations
            .filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => `${v.id} (${v.impact}): ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`)"""
    )
    return list(found)


def screenshot(page: Any, name: str) -> Path:
    """Save the whole page as an artifact of the test run."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
