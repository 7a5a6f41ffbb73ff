"""Before sending: what will be sent, confirmed or cancelled; and the page with the keyboard
alone, from choosing a study to looking through its result's images."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import screenshot
from tests.browser.pages import PYTHON_FIRST, example_config, map_config, sample_study, send_it
from tests.harness.servers import ServerFactory
from tests.harness.wait import wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]


def focused(page: Any) -> str:
    """The focused element: its id, else its accessible name as the test reads it."""
    return str(
        page.evaluate(
            "() => document.activeElement.id || document.activeElement.getAttribute('aria-label') || document.activeElement.textContent.trim()"
        )
    )


# Whether the focus is on something of the page outside the open viewer (the browser's own
# controls, between the last button and the first, are not the page's).
FOCUS_BEHIND_THE_VIEWER = """() => {
    const active = document.activeElement;
    return active !== document.body && !document.getElementById("viewer").contains(active);
}"""


def folder_rows(page: Any) -> list[list[str]]:
    rows = page.locator("#confirm-folders-body tr").all()
    return [row.locator("td").all_inner_texts() for row in rows]


def test_what_will_be_sent_is_shown_first(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    files = {
        **{f"CT/slice-{n:03d}.dcm": bytes(1000) for n in range(12)},
        **{f"MR/image-{n}.dcm": bytes(500) for n in range(3)},
        "notes.txt": b"x" * 200,
    }
    source = tmp_path / "study.zip"
    with zipfile.ZipFile(source, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    folder = tmp_path / "CT study"
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    scripted = map_config("scripted_map.py", "{input_path}", "{output_path}")
    with mis_server(tmp_path, scripted, env=PYTHON_FIRST) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_text("Idle: ready for a study").wait_for()
        page.get_by_label("Choose a zip file…").set_input_files(source)
        page.locator("#confirm").wait_for()
        zip_summary = page.locator("#confirm-summary").inner_text()
        zip_rows = folder_rows(page)
        screenshot(page, "confirm")
        page.get_by_role("button", name="Cancel").click()
        cancelled = page.locator("#confirm").is_hidden()
        page.get_by_label("Choose a folder…").set_input_files(folder)
        page.locator("#confirm").wait_for()
        folder_heading = page.locator("#confirm-heading").inner_text()
        folder_summary = page.locator("#confirm-summary").inner_text()
        folder_rows_shown = folder_rows(page)
        send_it(page)
        page.locator("#outcome").get_by_text("The result is ready.").wait_for()
        # the access line is written just after the answer's last byte
        wait_until(lambda: "POST /v1/inference" in server.log_text(), what="the access line")
        log = server.log_text()
    assert (
        zip_summary
        == f"16 files, 13.7 KB in all, in a zip of {source.stat().st_size / 1000:.1f} KB."
    )
    assert zip_rows == [
        ["CT", "12", "12.0 KB"],
        ["MR", "3", "1.5 KB"],
        ["(top level)", "1", "200 bytes"],
    ]
    assert cancelled
    assert folder_heading == "Send CT study?"
    assert folder_summary == "16 files, 13.7 KB in all (zipped here as it is sent)."
    assert folder_rows_shown == zip_rows
    assert log.count("POST /v1/inference") == 1  # the cancelled zip was never sent


def test_a_zip_the_browser_cannot_list_can_still_be_sent(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    not_a_zip = tmp_path / "scan.zip"
    not_a_zip.write_bytes(b"this is not a zip archive")
    with mis_server(tmp_path) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_text("Idle: ready for a study").wait_for()
        page.get_by_label("Choose a zip file…").set_input_files(not_a_zip)
        # the step appears once the page has tried to read the list (asynchronously)
        page.locator("#confirm-problem").get_by_text("You can still send it").wait_for()
        problem = page.locator("#confirm-problem").inner_text()
        screenshot(page, "confirm-unreadable")
        send_it(page)
        page.locator("#outcome").get_by_text("This file cannot be used.").wait_for()
    assert "could not read this zip's list of files: it is not a zip archive" in problem
    assert "You can still send it" in problem


def test_an_empty_folder_cannot_be_sent(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    """Chromium lists no files for an empty folder, so the page's drop path is used: a
    dropped folder whose walk finds nothing."""
    with mis_server(tmp_path) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_text("Idle: ready for a study").wait_for()
        page.evaluate(
            """() => {
                const root = { isFile: false, isDirectory: true, name: "empty",
                    createReader: () => ({ readEntries: (ok) => ok([]) }) };
                const drop = new Event("drop", { bubbles: true, cancelable: true });
                Object.defineProperty(drop, "dataTransfer", { value: {
                    items: [{ webkitGetAsEntry: () => root }], files: [] } });
                document.getElementById("drop-zone").dispatchEvent(drop);
            }"""
        )
        page.locator("#confirm").wait_for()
        problem = page.locator("#confirm-problem").inner_text()
        send_hidden = page.locator("#confirm-send").is_hidden()
        focus = focused(page)
    assert problem.startswith("There is nothing to send.")
    assert send_hidden
    assert focus == "confirm-cancel"


def test_choosing_sending_and_the_gallery_with_the_keyboard_alone(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    study = sample_study(tmp_path)
    with mis_server(tmp_path, config=example_config(tmp_path), env=PYTHON_FIRST) as server:
        page = new_page()
        # Playwright intercepts file choosers only once something listens for them, and turns
        # that on asynchronously: listen from the start, so no key press outruns it
        page.on("filechooser", lambda chooser: None)
        page.goto(server.url)
        page.get_by_text("Idle: ready for a study").wait_for()
        page.keyboard.press("Tab")
        steps = [focused(page)]

        def choose() -> None:
            assert focused(page) == "zip-input"
            with page.expect_file_chooser() as chooser:
                page.keyboard.press("Space")
            chooser.value.set_files(study)
            page.locator("#confirm").wait_for()

        choose()
        steps.append(focused(page))  # the confirm step takes the focus
        page.keyboard.press("Tab")
        steps.append(focused(page))
        page.keyboard.press("Enter")  # Cancel
        steps.append(focused(page))  # back where the study was chosen
        choose()
        page.keyboard.press("Escape")  # cancels too
        steps.append(focused(page))
        choose()
        page.keyboard.press("Enter")  # Send
        page.locator("#outcome").get_by_text("The result is ready.").wait_for(timeout=120_000)
        page.locator("#gallery .thumbnail").first.wait_for()  # the result view is built, then
        page.locator("#download:focus").wait_for()  # the focus goes to the download link
        steps.append(focused(page))
        page.keyboard.press("Tab")
        steps.append(focused(page))
        page.keyboard.press("Tab")
        steps.append(focused(page))
        page.keyboard.press("Enter")  # enlarge the second image
        page.locator("#viewer-image[src]").wait_for()
        viewed = [page.locator("#viewer-name").inner_text()]
        page.keyboard.press("ArrowRight")
        viewed.append(page.locator("#viewer-name").inner_text())
        page.locator("#viewer-image[src]").wait_for()
        screenshot(page, "viewer")
        outside = []
        for _ in range(5):  # the open viewer keeps the focus off the page behind it
            page.keyboard.press("Tab")
            outside.append(page.evaluate(FOCUS_BEHIND_THE_VIEWER))
        page.keyboard.press("Escape")
        closed = not page.locator("#viewer").is_visible()
        steps.append(focused(page))  # the image last viewed
        page.keyboard.press("Shift+Tab")
        steps.append(focused(page))
    assert steps == [
        "zip-input",
        "confirm-send",
        "confirm-cancel",
        "zip-input",
        "zip-input",
        "download",
        "masks/series-001/0001.png: enlarge",
        "masks/series-001/0002.png: enlarge",
        "masks/series-001/0003.png: enlarge",
        "masks/series-001/0002.png: enlarge",
    ]
    assert viewed == ["masks/series-001/0002.png", "masks/series-001/0003.png"]
    assert outside == [False] * 5
    assert closed
