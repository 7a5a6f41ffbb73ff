"""The page at / in headless Chromium against the real server on 127.0.0.1.

Each test saves a screenshot of the state it reaches (see conftest.SCREENSHOTS).
"""

from __future__ import annotations

import base64
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import screenshot
from tests.harness.servers import ServerFactory
from tests.harness.wait import wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]

STUDY = {
    "series-1/slice-001.dcm": b"\x00DICM" + bytes(range(256)) * 40,
    "series-1/slice-002.dcm": b"\x01DICM" * 3000,
    "série 2/notes.txt": "données".encode(),
}


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def downloaded(page: Any) -> tuple[str, dict[str, bytes]]:
    """Click the download link; the file's suggested name and the zip's contents."""
    with page.expect_download() as info:
        page.get_by_role("link", name="Download the result").click()
    download = info.value
    with zipfile.ZipFile(download.path()) as archive:
        return download.suggested_filename, {n: archive.read(n) for n in archive.namelist()}


def outcome(page: Any) -> Any:
    return page.locator("#outcome")


def send_it(page: Any) -> None:
    """Confirm the step that shows what will be sent."""
    page.get_by_role("button", name=re.compile(r"^Send ")).click()


def test_pick_a_zip_and_download_the_maps_outputs(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    source = write_zip(tmp_path / "study.zip", STUDY)
    # relative to the server's directory, so the screenshots (in the docs) show no local paths
    command = ["python3", "tests/maps/scripted_map.py", "{input_path}", "{output_path}"]
    with mis_server(tmp_path, {"map": {"command": command}}) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_text("Idle: ready for a study").wait_for()
        summary = page.locator("#map-summary").inner_text()
        assert "scripted_map.py" in summary
        assert "3 seconds" in summary  # the time limit
        screenshot(page, "idle")
        page.get_by_label("Choose a zip file…").set_input_files(source)
        send_it(page)
        outcome(page).get_by_text("The result is ready.").wait_for()
        screenshot(page, "result")
        name, files = downloaded(page)
        server.wait_until_clean()
    assert name == "study-output.zip"
    for path, data in STUDY.items():
        assert files[path] == data


def test_a_folder_is_zipped_in_the_browser_with_its_relative_paths(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    folder = write_folder(tmp_path / "CT study", STUDY)
    with mis_server(tmp_path) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_text("Idle: ready for a study").wait_for()
        page.get_by_label("Choose a folder…").set_input_files(folder)
        send_it(page)
        outcome(page).get_by_text("The result is ready.").wait_for()
        name, files = downloaded(page)
    assert name == "CT study-output.zip"
    assert {n: d for n, d in files.items() if not n.startswith("_")} == STUDY


def test_a_dropped_zip_is_sent(tmp_path: Path, new_page: Any, mis_server: ServerFactory) -> None:
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        archive.writestr("dropped.txt", b"dropped on the page")
    with mis_server(tmp_path) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_text("Idle: ready for a study").wait_for()
        page.evaluate(
            """(encoded) => {
                const bytes = Uint8Array.from(atob(encoded), (c) => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], "dropped.zip", { type: "application/zip" }));
                const zone = document.getElementById("drop-zone");
                zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
            }""",
            base64.b64encode(data.getvalue()).decode(),
        )
        send_it(page)
        outcome(page).get_by_text("The result is ready.").wait_for()
        name, files = downloaded(page)
    assert name == "dropped-output.zip"
    assert files["dropped.txt"] == b"dropped on the page"


def test_a_dropped_folder_is_walked_and_zipped(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    """A drop of a folder as Chromium delivers it: a directory entry to walk (read in batches,
    as readEntries returns them). Scripts cannot put a real folder in a drop, so the entries
    are built in the page around real File objects; the walking and zipping are the page's."""
    with mis_server(tmp_path) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_text("Idle: ready for a study").wait_for()
        page.evaluate(
            """(files) => {
                const file = (path) => ({ isFile: true, isDirectory: false, name: path.split("/").pop(),
                    file: (ok) => ok(new File([files[path]], path.split("/").pop())) });
                const folder = (name, children) => ({ isFile: false, isDirectory: true, name,
                    createReader: () => {
                        const batches = [children.slice(0, 1), children.slice(1), []];
                        return { readEntries: (ok) => ok(batches.shift()) };
                    } });
                const root = folder("dropped study", [
                    folder("series-1", [file("series-1/slice-001.dcm"), file("series-1/slice-002.dcm")]),
                    file("notes.txt"),
                ]);
                const drop = new Event("drop", { bubbles: true, cancelable: true });
                Object.defineProperty(drop, "dataTransfer", { value: {
                    items: [{ webkitGetAsEntry: () => root }], files: [] } });
                document.getElementById("drop-zone").dispatchEvent(drop);
            }""",
            {
                "series-1/slice-001.dcm": "first slice",
                "series-1/slice-002.dcm": "second slice",
                "notes.txt": "a note",
            },
        )
        send_it(page)
        outcome(page).get_by_text("The result is ready.").wait_for()
        name, files = downloaded(page)
    assert name == "dropped study-output.zip"
    assert {n: d for n, d in files.items() if not n.startswith("_")} == {
        "series-1/slice-001.dcm": b"first slice",
        "series-1/slice-002.dcm": b"second slice",
        "notes.txt": b"a note",
    }


def test_a_second_tab_is_told_the_service_is_busy(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    source = write_zip(tmp_path / "waits.zip", {"_mode": b"wait", "a.txt": b"a"})
    other = write_zip(tmp_path / "other.zip", {"b.txt": b"b"})
    with mis_server(tmp_path, {"map": {"timeout_seconds": 30}}) as server:
        first = new_page()
        first.goto(server.url)
        first.get_by_text("Idle: ready for a study").wait_for()
        first.get_by_label("Choose a zip file…").set_input_files(source)
        send_it(first)
        wait_until((tmp_path / "started").exists, 20, "the MAP to start")
        first.get_by_text("Running the application:").wait_for()
        assert "of at most 30 s" in first.locator("#phase").inner_text()
        screenshot(first, "running")

        second = new_page()
        second.goto(server.url)
        second.get_by_text("Busy with another study (running for").wait_for()
        second.get_by_label("Choose a zip file…").set_input_files(other)
        send_it(second)
        outcome(second).get_by_text("The service is busy with another study.").wait_for()
        assert "Wait until the status above says idle" in outcome(second).inner_text()
        screenshot(second, "busy")

        (tmp_path / "release").write_text("go")
        outcome(first).get_by_text("The result is ready.").wait_for()
        second.get_by_text("Idle: ready for a study").wait_for()  # it polls the status


def test_a_failing_map_shows_its_message_and_last_log_lines(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    source = write_zip(tmp_path / "fails.zip", {"_mode": b"fail"})
    with mis_server(tmp_path) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_label("Choose a zip file…").set_input_files(source)
        send_it(page)
        outcome(page).get_by_text("The application failed on this study.").wait_for()
        details = outcome(page).locator("pre").inner_text()
        map_log_shown = page.locator("#log-area").is_visible()  # the MAP ran: its log stays
        screenshot(page, "map-failed")
    assert "exited with code 3" in details
    assert "error: the model could not be loaded" in details
    assert "Request id:" in outcome(page).inner_text()
    assert page.get_by_role("link", name="Download the result").is_hidden()
    assert map_log_shown


def test_a_timeout_shows_the_timeout_message(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    source = write_zip(tmp_path / "hangs.zip", {"_mode": b"hang"})
    with mis_server(tmp_path, {"map": {"timeout_seconds": 1}}) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_label("Choose a zip file…").set_input_files(source)
        send_it(page)
        outcome(page).get_by_text("The application did not finish in time").wait_for()
        screenshot(page, "timeout")
    assert "Try a smaller study" in outcome(page).inner_text()
    assert "did not finish within 1 seconds" in outcome(page).locator("pre").inner_text()


def test_invalid_input_is_explained(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    not_a_zip = tmp_path / "scan.zip"
    not_a_zip.write_bytes(b"this is not a zip archive")
    with mis_server(tmp_path) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_label("Choose a zip file…").set_input_files(not_a_zip)
        send_it(page)
        outcome(page).get_by_text("This file cannot be used.").wait_for()
        map_log_shown = page.locator("#log-area").is_visible()  # the MAP never ran: no log
    assert "Send a .zip archive of the study" in outcome(page).inner_text()
    assert not map_log_shown


def test_the_token_is_asked_once_and_kept_out_of_urls(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    token = "page-test-token-5d1c"
    tokens = tmp_path / "tokens"
    tokens.write_text(token + "\n")
    source = write_zip(tmp_path / "study.zip", {"a.txt": b"a"})
    with mis_server(tmp_path, {"server": {"auth": {"tokens_file": str(tokens)}}}) as server:
        page = new_page()
        page.goto(server.url)
        token_field = page.get_by_label("This service needs an access token")
        token_field.wait_for()
        screenshot(page, "token")
        token_field.fill("wrong-token")
        page.get_by_role("button", name="Use this token").click()
        page.get_by_text("Your access token was not accepted.").wait_for()
        token_field.fill(token)
        page.get_by_role("button", name="Use this token").click()
        page.get_by_text("Idle: ready for a study").wait_for()
        page.reload()  # kept for the browser session: not asked again
        page.get_by_text("Idle: ready for a study").wait_for()
        assert page.locator("#token-section").is_hidden()
        page.get_by_label("Choose a zip file…").set_input_files(source)
        send_it(page)
        outcome(page).get_by_text("The result is ready.").wait_for()
        assert token not in page.url
        log = server.log_text()
    assert token not in log
    assert "GET /v1/status -> 401" in log  # the wrong token was refused by the server


def test_upload_progress_is_shown_while_a_slow_upload_runs(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    source = write_zip(tmp_path / "big study.zip", {"volume.raw": bytes(range(256)) * 4096})
    with mis_server(tmp_path) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_text("Idle: ready for a study").wait_for()
        network = page.context.new_cdp_session(page)
        network.send("Network.enable")
        network.send(  # about 4 s for the 1 MB upload
            "Network.emulateNetworkConditions",
            {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 256_000},
        )
        page.get_by_label("Choose a zip file…").set_input_files(source)
        send_it(page)
        page.get_by_text("Uploading big study.zip:").wait_for()
        fraction = page.locator("#progress").evaluate("p => p.value")
        screenshot(page, "uploading")
        assert 0 < fraction < 1
        assert " of 1.0 MB" in page.locator("#phase").inner_text()
        outcome(page).get_by_text("The result is ready.").wait_for()


def test_text_has_readable_contrast(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    """WCAG AA (4.5:1) for the text of every state the page shows, against its background."""
    source = write_zip(tmp_path / "fails.zip", {"_mode": b"fail"})
    with mis_server(tmp_path) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_text("Idle: ready for a study").wait_for()
        ratios = page.evaluate(CONTRAST, "h1, h2, dt, dd, .state, .hint, label.button")
        page.get_by_label("Choose a zip file…").set_input_files(source)
        send_it(page)
        outcome(page).get_by_text("The application failed on this study.").wait_for()
        ratios += page.evaluate(CONTRAST, "#outcome h3, #outcome p, #outcome pre")
    low = [(text, ratio) for text, ratio in ratios if ratio < 4.5]
    assert len(ratios) > 10
    assert low == []


# For each element matching the selector: its text and the contrast of its colour against the
# first opaque background behind it (WCAG relative luminance).
CONTRAST = """(selector) => {
    const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
    const lum = ([r, g, b]) => {
        const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
    };
    const background = (el) => {
        for (; el; el = el.parentElement) {
            const c = rgb(getComputedStyle(el).backgroundColor);
            if (c.length < 4 || c[3] > 0) return c;
        }
        return [255, 255, 255];
    };
    return [...document.querySelectorAll(selector)].filter((el) => el.offsetParent).map((el) => {
        const [a, b] = [lum(rgb(getComputedStyle(el).color)), lum(background(el))];
        return [el.textContent.trim().slice(0, 40), (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
    });
}"""


def test_controls_are_labelled_and_reachable_with_the_keyboard(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    with mis_server(tmp_path) as server:
        page = new_page()
        page.goto(server.url)
        page.get_by_text("Idle: ready for a study").wait_for()
        focused = []
        for _ in range(4):
            page.keyboard.press("Tab")
            focused.append(page.evaluate("document.activeElement.id"))
        outline = page.evaluate(
            "getComputedStyle(document.querySelector('label[for=zip-input]')).outlineStyle"
        )
    assert focused[:2] == ["zip-input", "folder-input"]
    assert outline != "none"  # the focused (visually hidden) input shows on its label
