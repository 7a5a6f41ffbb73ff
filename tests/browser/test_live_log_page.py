"""The MAP's lines on the page while it runs, and nobody else's page or client getting them."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import screenshot
from tests.browser.pages import PYTHON_FIRST, map_config, send_it
from tests.harness.servers import ServerFactory

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

# Each line added to the page's log, with the time it appeared (seconds, the system clock,
# as the MAP's time.time() is).
RECORD_LINES = """() => {
    window.seenLines = [];
    new MutationObserver((changes) => {
        for (const change of changes) for (const node of change.addedNodes) {
            if (node.classList?.contains("line")) window.seenLines.push([Date.now() / 1000, node.textContent]);
        }
    }).observe(document.getElementById("live-log"), { childList: true });
}"""


def ticks_zip(path: Path, **ticks: Any) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("_ticks.json", json.dumps(ticks))
    return path


def test_the_maps_lines_show_within_a_second_of_each(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    source = ticks_zip(tmp_path / "ticking study.zip", lines=6, interval=1.0)
    with mis_server(tmp_path, map_config("ticking_map.py"), env=PYTHON_FIRST) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_text("Idle: ready for a study").wait_for()
        page.evaluate(RECORD_LINES)
        page.get_by_label("Choose a zip file…").set_input_files(source)
        send_it(page)
        page.wait_for_function("() => window.seenLines.length >= 3")
        page.get_by_text("Running the application:").wait_for()
        screenshot(page, "running-log")
        page.locator("#outcome").get_by_text("The result is ready.").wait_for()
        page.wait_for_function("() => window.seenLines.some(([, text]) => text === 'done')")
        seen = page.evaluate("window.seenLines")
        heading = page.locator("#log-heading").inner_text()
    ticks = [(arrived, text) for arrived, text in seen if text.startswith("tick")]
    assert [text.split(" at ")[0] for _, text in ticks] == [f"tick {n}" for n in range(1, 7)]
    delays = [arrived - float(text.split(" at ")[1]) for arrived, text in ticks]
    assert all(-0.05 < delay < 1.0 for delay in delays), delays
    assert all("\x1b" not in text and "[32m" not in text for _, text in seen)
    assert heading == "What the application printed"


def test_another_client_gets_none_of_the_lines(
    tmp_path: Path, new_page: Any, browser: Any, mis_server: ServerFactory
) -> None:
    """Another person's page (another token), or anyone who guesses the id or lacks the key,
    is answered 404 with no line, while the sender's page shows them."""
    (tmp_path / "tokens").write_text("sender-token-3c1d\nother-token-9e44\n")
    auth = {"server": {"auth": {"tokens_file": str(tmp_path / "tokens")}}}
    source = ticks_zip(tmp_path / "study.zip", lines=3, interval=0, hold=True)
    with mis_server(tmp_path, {**map_config("ticking_map.py"), **auth}, env=PYTHON_FIRST) as server:
        page = new_page()
        sent: dict[str, str] = {}
        page.on(
            "request",
            lambda r: (
                sent.update(r.headers) if r.method == "POST" and "/v1/inference" in r.url else None
            ),
        )
        page.goto(server.url)
        page.get_by_label("This service needs an access token").fill("sender-token-3c1d")
        page.get_by_role("button", name="Use this token").click()
        page.get_by_text("Idle: ready for a study").wait_for()
        page.get_by_label("Choose a zip file…").set_input_files(source)
        send_it(page)
        page.locator("#live-log .line").nth(2).wait_for()

        other_context = browser.new_context()
        try:
            other = other_context.new_page()
            other.goto(server.url)
            answers = other.evaluate(
                TRY_TO_READ, {"id": sent["x-request-id"], "key": sent["x-log-key"]}
            )
        finally:
            other_context.close()
        (tmp_path / "release").write_text("go")
        page.locator("#outcome").get_by_text("The result is ready.").wait_for()
        shown = page.locator("#live-log .line").all_inner_texts()
    assert len(sent["x-log-key"]) == 32  # 128 bits, as hex
    assert [line.split(" at ")[0] for line in shown[:3]] == ["tick 1", "tick 2", "tick 3"]
    assert {what: status for what, (status, _) in answers.items()} == dict.fromkeys(answers, 404)
    assert all("tick" not in body for _, body in answers.values())


# From another page: read the log with the id and key the sender used but another token; and
# with the sender's token but a guessed key, no key, or a guessed id.
TRY_TO_READ = """async ({ id, key }) => {
    const attempts = {
        "another token, the right id and key": [id, { Authorization: "Bearer other-token-9e44", "X-Log-Key": key }],
        "a guessed key": [id, { Authorization: "Bearer sender-token-3c1d", "X-Log-Key": "0".repeat(32) }],
        "no key": [id, { Authorization: "Bearer sender-token-3c1d" }],
        "a guessed id": ["0123456789abcdef0123456789abcdef", { Authorization: "Bearer sender-token-3c1d", "X-Log-Key": key }],
    };
    const answers = {};
    for (const [what, [requestId, headers]] of Object.entries(attempts)) {
        const response = await fetch(`/v1/inference/${requestId}/log`, { headers });
        answers[what] = [response.status, await response.text()];
    }
    return answers;
}"""
