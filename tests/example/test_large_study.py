"""A 1,000-slice 512×512 CT through MIS with the example's own limits: it fits, with room."""

from __future__ import annotations

import io
import json
import re
import sys
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.example import EXAMPLE_EXTRA
from tests.example.serving import example_config, leftovers_after
from tests.harness.repo import REPO
from tests.harness.servers import ServerFactory
from tests.harness.unavailable import require_module

require_module("pydicom", EXAMPLE_EXTRA)

from examples.dicom_stats import synthetic  # noqa: E402 (needs pydicom)

SLICES = 1000
PROBE = REPO / "tests" / "example" / "peak_rss.py"
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def memory_limit(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * UNITS[unit]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_1000_slice_ct_answers_200_well_within_the_memory_limit(
    tmp_path: Path, mis_server: ServerFactory
) -> None:
    config = example_config(tmp_path)
    limit = memory_limit(config["map"]["resources"]["memory"])
    # The MAP's own command, run by a probe that reports its peak RSS in the output.
    config["map"]["command"] = [
        sys.executable,
        str(PROBE),
        "{output_path}",
        *config["map"]["command"],
    ]
    study = synthetic.write_zip(tmp_path / "ct.zip", SLICES)

    with mis_server(tmp_path, config=config) as server, open(study, "rb") as upload:
        response = httpx.post(
            f"{server.url}/v1/inference",
            content=upload,
            headers={"Content-Type": "application/zip"},
            timeout=600,
        )
        leftovers = leftovers_after(server)

    assert response.status_code == 200, response.text
    assert leftovers == []
    with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
        peak = json.loads(zf.read("peak_rss.json"))["peak_rss_bytes"]
        [record] = json.loads(zf.read("summary.json"))["series"]
        masks = sorted(n for n in zf.namelist() if n.endswith(".png"))
        first, last = (
            np.asarray(Image.open(io.BytesIO(zf.read(n)))) for n in (masks[0], masks[-1])
        )
    print(
        f"peak RSS of the MAP for {SLICES} slices: {peak / 2**20:.0f} MiB (limit {limit / 2**20:.0f} MiB)"
    )
    assert peak < limit / 4, f"the MAP peaked at {peak / 2**20:.0f} MiB"
    assert (record["images"], len(masks)) == (SLICES, SLICES)
    assert record["ordered_by"] == "position along the slice normal"
    assert record["slice_spacing_mm"] == synthetic.SPACING_MM
    # Slice order: the bone disc grows along the normal, whatever the instance numbers say.
    assert np.count_nonzero(first) < np.count_nonzero(last)
    assert record["mask_volume_mm3"] == pytest.approx(
        record["mask_voxels"] * synthetic.PIXEL_MM**2 * synthetic.SPACING_MM, rel=1e-6
    )
    assert record["min"] >= -1024
    assert 700 <= record["max"] < 700 + 16
