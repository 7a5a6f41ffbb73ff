"""The result view: what the output zip holds, read in the browser from the zip it received.

Real server, real MAPs (the example DICOM statistics MAP on the sample study among them),
headless Chromium. Screenshots of the states go with the other ones (conftest.SCREENSHOTS).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import SCREENSHOTS, screenshot
from tests.browser.pages import (
    PYTHON_FIRST,
    download_result,
    example_config,
    flat_record_lists,
    map_config,
    run_zip,
    sample_study,
    shown_as,
)
from tests.harness.servers import ServerFactory

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]

# The JS heap of the page showing the first screen of a 2,000-file, 200 MB result, then
# after paging through images, opening the viewer and showing more: measured at about
# 2.5-4 MB used (the zip itself is a Blob, outside the heap). The bound leaves room for
# Chromium versions; a page that held the zip or its previews in the heap would need 200 MB.
HEAP_BOUND_BYTES = 16 * 1024 * 1024


def thumbnails(page: Any) -> Any:
    return page.locator("#gallery .thumbnail")


def wait_decoded(page: Any, count: int) -> None:
    """Bring each thumbnail into view (previews are made lazily) and wait until it decodes."""
    for index in range(count):
        thumbnails(page).nth(index).scroll_into_view_if_needed()
    page.wait_for_function(
        """(count) => {
            const images = [...document.querySelectorAll("#gallery .thumbnail img")];
            return images.length === count && images.every((i) => i.complete && i.naturalWidth > 0);
        }""",
        arg=count,
    )


def table_of(page: Any, caption: str) -> tuple[list[str], list[list[str]]]:
    table = page.locator("table.records", has=page.locator(f"caption:text-matches('^{caption}:')"))
    headers = table.locator("thead th").all_inner_texts()
    rows = [row.locator("td").all_inner_texts() for row in table.locator("tbody tr").all()]
    return headers, rows


def test_the_example_maps_masks_and_summary_are_shown(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    with mis_server(tmp_path, config=example_config(tmp_path), env=PYTHON_FIRST) as server:
        page = new_page()
        run_zip(page, server.url, sample_study(tmp_path))
        output = download_result(page)
        masks = sorted(n for n in output.namelist() if n.endswith(".png"))
        summary = json.loads(output.read("summary.json"))
        wait_decoded(page, len(masks))
        names = thumbnails(page).locator(".name").all_inner_texts()
        widths = page.eval_on_selector_all(
            "#gallery img", "(all) => all.map((i) => i.naturalWidth)"
        )
        tables = {key: table_of(page, key) for key, _ in flat_record_lists(summary)}
        page.locator("#result").scroll_into_view_if_needed()
        screenshot(page, "result-gallery")
    assert len(masks) == 6  # five CT slices and one MR image
    assert names == masks
    expected_widths = [Image.open(io.BytesIO(output.read(n))).width for n in masks]
    assert widths == expected_widths
    assert "series" in tables
    for key, records in flat_record_lists(summary):
        headers, rows = tables[key]
        columns = list(dict.fromkeys(k for record in records for k in record))
        assert headers == columns
        assert len(rows) == len(records)
        for row, record in zip(rows, records, strict=True):
            for cell, column in zip(row, columns, strict=True):
                value = record.get(column)
                if isinstance(value, float | int) and not isinstance(value, bool):
                    assert float(cell) == value, (key, column)
                else:
                    assert cell == ("" if column not in record else shown_as(value)), (key, column)


def noise_png(side: int, seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_stored_and_deflated_entries_both_preview(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    """The scripted MAP copies its input: the zip it answers with has these files, noise
    stored (it does not compress) and the rest deflated (MIS's adaptive compression)."""
    text = "".join(f"line {n}: the quick brown fox\n" for n in range(8000)).encode()
    files = {
        "noise.png": noise_png(300, 1),
        "small/mask.png": noise_png(20, 2),
        "report.txt": text,
        "data.json": json.dumps({"study": {"name": "sample", "ok": True}, "rows": [{"a": 1}]}),
    }
    source = tmp_path / "mixed.zip"
    with zipfile.ZipFile(source, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    with mis_server(tmp_path) as server:
        page = new_page()
        run_zip(page, server.url, source)
        output = download_result(page)
        wait_decoded(page, 2)
        widths = page.eval_on_selector_all(
            "#gallery img", "(all) => all.map((i) => i.naturalWidth)"
        )
        page.locator("#documents summary", has_text="report.txt").click()  # opens its preview
        preview = page.locator(".text-preview[aria-label='report.txt (text)']")
        shown = preview.evaluate("(pre) => pre.textContent")
        note = page.locator(".document", has=preview).locator("p.hint").inner_text()
        tree = page.locator(".document", has_text="data.json").inner_text()
        screenshot(page, "result-previews")
    methods = {info.filename: info.compress_type for info in output.infolist()}
    assert methods["noise.png"] == zipfile.ZIP_STORED
    assert methods["small/mask.png"] == methods["report.txt"] == zipfile.ZIP_DEFLATED
    assert widths == [300, 20]
    assert shown == text[: 64 * 1024].decode()  # the first 64 KB, inflated no further
    assert f"The first 65.5 KB of {len(text) / 1000:.1f} KB" in note
    assert '"sample"' in tree  # data.json opened at first, as a tree
    assert "rows: 1 record" in tree


def heap_used(page: Any) -> int:
    session = page.context.new_cdp_session(page)
    session.send("HeapProfiler.collectGarbage")
    return int(session.send("Runtime.getHeapUsage")["usedSize"])


@pytest.mark.slow
def test_a_large_output_stays_responsive(
    tmp_path: Path, new_page: Any, mis_server: ServerFactory
) -> None:
    """2,000 images of 100 KB (200 MB, stored): the first screen comes at once, only what is
    on the screen is read, and the heap stays small."""
    many_files = map_config("many_files_map.py", "2000", "105000")
    source = tmp_path / "input.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("go.txt", "make many files")
    with mis_server(tmp_path, many_files, env=PYTHON_FIRST) as server:
        page = new_page()
        page.goto(server.url)
        heap = {"idle": heap_used(page)}
        run_zip(page, server.url, source)
        page.wait_for_function("() => performance.getEntriesByName('mis-result-shown').length > 0")
        first_screen_ms = page.evaluate(
            """performance.getEntriesByName("mis-result-shown")[0].startTime
               - performance.getEntriesByName("mis-result-received")[0].startTime"""
        )
        summary = page.locator("#result-summary").inner_text()
        heap["first screen"] = heap_used(page)
        counts = page.evaluate(
            """() => ({
                thumbnails: document.querySelectorAll("#gallery .thumbnail").length,
                rows: document.querySelectorAll("#files-body tr").length,
                read: [...document.querySelectorAll("#gallery img[src]")].length,
                offScreenRead: [...document.querySelectorAll("#gallery img[src]")].filter((i) => {
                    const r = i.getBoundingClientRect();
                    return r.bottom < -250 || r.top > innerHeight + 250;
                }).length,
            })"""
        )
        screenshot(page, "result-large")
        for _ in range(3):  # page through images as a person would
            more = page.locator("#gallery-more")
            more.scroll_into_view_if_needed()
            more.click()
        page.locator("#gallery .thumbnail").nth(150).scroll_into_view_if_needed()
        page.locator("#gallery .thumbnail").nth(150).click()
        page.locator("#viewer-image[src]").wait_for()
        page.keyboard.press("Escape")
        heap["after paging"] = heap_used(page)
        shown = page.locator("#gallery .thumbnail").count()
    SCREENSHOTS.parent.mkdir(parents=True, exist_ok=True)
    (SCREENSHOTS.parent / "page-large-output.json").write_text(
        json.dumps({"first_screen_ms": first_screen_ms, "heap_used_bytes": heap})
    )
    assert re.fullmatch(r"The application wrote 2,001 files, 2\d\d\.\d MB in all\.", summary)
    assert first_screen_ms < 1000
    assert counts["thumbnails"] == 48  # a page of the 2,000 at a time
    assert counts["rows"] == 200
    assert 0 < counts["read"] <= 48
    assert counts["offScreenRead"] == 0  # nothing inflated or sliced that is not near the screen
    assert shown == 4 * 48
    assert max(heap.values()) < HEAP_BOUND_BYTES, heap
