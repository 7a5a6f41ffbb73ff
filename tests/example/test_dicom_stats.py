"""The example MAP on real DICOM images, by itself and behind the server with its own config."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.example import EXAMPLE_EXTRA
from tests.example.serving import example_config
from tests.harness.repo import REPO
from tests.harness.servers import ServerFactory
from tests.harness.unavailable import require_module

require_module("pydicom", EXAMPLE_EXTRA)

from examples.dicom_stats.make_sample import build  # noqa: E402 (needs pydicom)
from tests.example.corpus import PYDICOM_FILES, radiograph_file  # noqa: E402 (needs pydicom)

APP = REPO / "examples" / "dicom_stats" / "app.py"


def run_app(input_folder: Path, output_folder: Path) -> Any:
    """The example MAP run by itself on `input_folder`; it must succeed. Its summary.json."""
    result = subprocess.run(
        [sys.executable, str(APP), "--input", str(input_folder), "--output", str(output_folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((output_folder / "summary.json").read_text())


def test_make_sample_writes_a_zip_where_nox_serve_asks(tmp_path: Path) -> None:
    target = tmp_path / ".mis" / "sample-input.zip"
    script = REPO / "examples" / "dicom_stats" / "make_sample.py"
    subprocess.run([sys.executable, str(script), str(target)], check=True, timeout=60)
    with zipfile.ZipFile(target) as zf:
        names = zf.namelist()
    assert "study/MR/MR_small.dcm" in names
    assert len([n for n in names if n.startswith("study/CT/")]) == 5


def test_the_map_summarises_each_series_and_writes_masks(tmp_path: Path) -> None:
    sample = build(tmp_path / "sample.zip", ct_slices=3)
    with zipfile.ZipFile(sample) as zf:
        zf.extractall(tmp_path / "in")
    (tmp_path / "out").mkdir()

    summary = run_app(tmp_path / "in", tmp_path / "out")
    assert summary["skipped_files"] == 1
    assert summary["skipped"] == [
        {
            "file": "study/README.txt",
            "kind": "not DICOM",
            "reason": "not DICOM: no DICOM file header (the 128-byte preamble and 'DICM')",
        }
    ]
    ct, mr = sorted(summary["series"], key=lambda s: s["modality"])
    assert (ct["modality"], ct["images"], ct["rows"], ct["columns"]) == ("CT", 3, 128, 128)
    assert ct["unit"] == "HU"
    assert ct["min"] < -500 < 300 < ct["max"]  # air and bone in the same slice
    assert 0 < ct["mask_fraction"] < 0.5
    assert ct["ordered_by"] == "position along the slice normal"
    assert ct["slice_spacing_mm"] == 5.0  # CT_small's thickness, as make_sample spaces its copies
    assert ct["mask_volume_mm3"] == pytest.approx(
        ct["mask_voxels"] * ct["row_spacing_mm"] * ct["column_spacing_mm"] * 5.0, rel=1e-6
    )
    assert mr["threshold_rule"] == "≥ threshold (Otsu)"
    assert mr["min"] < mr["threshold"] < mr["max"]
    masks = sorted((tmp_path / "out" / ct["mask_folder"]).glob("*.png"))
    assert [m.name for m in masks] == ["0001.png", "0002.png", "0003.png"]


def test_quick_start_config_serves_the_example(tmp_path: Path, mis_server: ServerFactory) -> None:
    sample = build(tmp_path / "sample.zip")
    not_dicom = tmp_path / "notes.zip"
    with zipfile.ZipFile(not_dicom, "w") as zf:
        zf.writestr("notes.txt", "no images here")
        zf.writestr("plan.dcm", (PYDICOM_FILES / "rtplan.dcm").read_bytes())
        zf.writestr("report.dcm", (PYDICOM_FILES / "test-SR.dcm").read_bytes())

    with mis_server(tmp_path, config=example_config(tmp_path)) as server:
        ok = httpx.post(
            f"{server.url}/v1/inference", files={"file": sample.read_bytes()}, timeout=60
        )
        failed = httpx.post(
            f"{server.url}/v1/inference", files={"file": not_dicom.read_bytes()}, timeout=60
        )

    assert ok.status_code == 200, ok.text
    with zipfile.ZipFile(io.BytesIO(ok.content)) as zf:
        names = zf.namelist()
        summary = json.loads(zf.read("summary.json"))
    assert {s["modality"] for s in summary["series"]} == {"CT", "MR"}
    assert len([n for n in names if n.endswith(".png")]) == 6
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "map_failed"
    message = failed.json()["error"]["message"]
    assert "no usable DICOM image in the input: 3 file(s), all skipped" in message
    assert "(1 not DICOM, 2 not an image)" in message
    assert server.leftovers() == []


def test_a_monochrome1_image_is_masked_where_it_is_shown_bright(tmp_path: Path) -> None:
    """MONOCHROME1 (common for radiographs) stores what is shown bright as low values: its
    mask is the same region as its MONOCHROME2 twin's, not the inverse of it."""
    masks = {}
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        folder = tmp_path / photometric
        (folder / "in").mkdir(parents=True)
        (folder / "out").mkdir()
        (folder / "in" / "image.dcm").write_bytes(radiograph_file(photometric))
        [series] = run_app(folder / "in", folder / "out")["series"]
        assert series["photometric_interpretation"] == photometric
        [mask] = (folder / "out" / series["mask_folder"]).glob("*.png")
        masks[photometric] = (series["mask_voxels"], mask.read_bytes())
    voxels, png = masks["MONOCHROME2"]
    assert 0 < voxels < 48 * 64 / 2  # the disc, not the field around it (corpus ROWS × COLUMNS)
    assert masks["MONOCHROME1"] == (voxels, png)
