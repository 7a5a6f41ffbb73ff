"""The example MAP on a study of every transfer syntax and every kind of object, through MIS.

One request carries the whole corpus (tests/example/corpus.py) to a real server on the process
backend with the example's own mis.yaml; each test checks one property of its answer.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.example import EXAMPLE_EXTRA
from tests.example.serving import example_config, leftovers_after
from tests.harness.servers import ServerFactory
from tests.harness.unavailable import require_module

require_module("pydicom", EXAMPLE_EXTRA)

import pydicom  # noqa: E402 (after the check above)

from tests.example import corpus  # noqa: E402 (needs pydicom)

pytestmark = pytest.mark.slow  # see pyproject.toml: more than a few seconds


def zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return target


@dataclass
class Answer:
    corpus: corpus.Corpus
    status: int
    text: str
    files: dict[str, bytes]
    leftovers: list[str]

    @property
    def summary(self) -> dict[str, Any]:
        return json.loads(self.files["summary.json"])

    def record_of(self, name: str) -> dict[str, Any]:
        uid = series_of(self.corpus.root / name)
        [record] = [r for r in self.summary["series"] if r["series_instance_uid"] == uid]
        return record

    def masks(self, record: dict[str, Any]) -> list[np.ndarray]:
        prefix = record["mask_folder"] + "/"
        names = sorted(n for n in self.files if n.startswith(prefix) and n.endswith(".png"))
        return [np.asarray(Image.open(io.BytesIO(self.files[n]))) for n in names]


def header(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


def series_of(path: Path) -> str:
    """The series the MAP files an object under (objects without a series UID share one)."""
    return str(header(path).get("SeriesInstanceUID", "") or "unknown-series")


@pytest.fixture(scope="module")
def answer(tmp_path_factory: pytest.TempPathFactory, mis_server: ServerFactory) -> Iterator[Answer]:
    tmp_path = tmp_path_factory.mktemp("corpus")
    study = corpus.build(tmp_path / "study")
    archive = zip_folder(study.root, tmp_path / "study.zip")
    with mis_server(tmp_path, config=example_config(tmp_path)) as server:
        response = httpx.post(
            f"{server.url}/v1/inference", files={"file": archive.read_bytes()}, timeout=120
        )
        files = {}
        if response.status_code == 200:
            with zipfile.ZipFile(io.BytesIO(response.content)) as zf:
                files = {name: zf.read(name) for name in zf.namelist()}
        yield Answer(study, response.status_code, response.text, files, leftovers_after(server))


def test_the_study_answers_200_and_leaves_nothing(answer: Answer) -> None:
    assert answer.status == 200, answer.text
    assert answer.leftovers == []


def test_every_image_object_gets_a_summary_entry_and_a_mask_per_frame(answer: Answer) -> None:
    frames: dict[str, int] = defaultdict(int)
    sizes: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for name in answer.corpus.images:
        ds, uid = header(answer.corpus.root / name), series_of(answer.corpus.root / name)
        frames[uid] += int(ds.get("NumberOfFrames") or 1)
        sizes[uid].add((int(ds.Rows), int(ds.Columns)))
    records = {r["series_instance_uid"]: r for r in answer.summary["series"]}

    assert set(records) == set(frames)
    for uid, record in records.items():
        masks = answer.masks(record)
        assert record["images"] == frames[uid] == len(masks), record
        assert {m.shape for m in masks} <= sizes[uid], record
        assert all(m.dtype == np.uint8 and set(np.unique(m)) <= {0, 255} for m in masks)
        assert record["min"] <= record["mean"] <= record["max"], record
        assert record["std"] >= 0, record
        assert 0 <= record["mask_fraction"] <= 1, record
    skipped = {s["file"] for s in answer.summary["skipped"]}
    assert not skipped & set(answer.corpus.images)


def test_every_other_object_is_listed_with_the_reason_it_was_skipped(answer: Answer) -> None:
    skipped = {s["file"]: s for s in answer.summary["skipped"]}

    assert {name: s["kind"] for name, s in skipped.items()} == answer.corpus.others
    assert answer.summary["skipped_files"] == len(answer.corpus.others)
    for entry in skipped.values():
        assert entry["reason"].startswith(entry["kind"] + ": ")
        assert len(entry["reason"]) > 20
    assert "RT Structure Set Storage" in skipped["generated/rtstruct.dcm"]["reason"]
    assert "Presentation State" in skipped["generated/presentation-state.dcm"]["reason"]
    assert "Media Storage Directory" in skipped["shipped/dicomdirtests/DICOMDIR"]["reason"]


def test_every_lossless_syntax_gives_the_exact_statistics_and_mask(answer: Answer) -> None:
    hu = corpus.hounsfield()
    bone = hu > 300
    for name, syntax in answer.corpus.lossless.items():
        record = answer.record_of(name)
        assert record["transfer_syntax"] == syntax.name
        assert (record["min"], record["max"]) == (hu.min(), hu.max()), syntax.name
        assert record["mean"] == pytest.approx(hu.mean(), abs=1e-3), syntax.name
        assert record["std"] == pytest.approx(hu.std(), abs=1e-3), syntax.name
        assert record["mask_voxels"] == bone.sum(), syntax.name
        assert record["mask_volume_mm3"] == pytest.approx(bone.sum() * 0.5 * 0.5 * 2.0)
        [mask] = answer.masks(record)
        assert np.array_equal(mask == 255, bone), syntax.name


def test_lossy_syntaxes_decode_to_nearly_the_same_statistics(answer: Answer) -> None:
    for name, syntax in answer.corpus.lossy.items():
        record = answer.record_of(name)
        values = corpus.hounsfield()
        if record["unit"] != "HU":  # the 8-bit baseline image: stored values
            values = (corpus.ct_pixels() >> 4).astype(np.float64)
        assert record["transfer_syntax"] == syntax.name
        spread = values.max() - values.min()
        assert abs(record["mean"] - values.mean()) < 0.01 * spread, syntax.name
        assert abs(record["std"] - values.std()) < 0.01 * spread, syntax.name
        # The mask is what the threshold cuts from the source, but for a few changed pixels.
        [mask] = answer.masks(record)
        rule = values > 300 if record["unit"] == "HU" else values >= record["threshold"]
        assert np.mean((mask == 255) != rule) < 0.02, syntax.name


@pytest.mark.parametrize(
    ("name", "modality"),
    [("generated/enhanced-ct-rle.dcm", "CT"), ("generated/enhanced-mr.dcm", "MR")],
)
def test_enhanced_frames_are_placed_scaled_and_measured_by_their_functional_groups(
    answer: Answer, name: str, modality: str
) -> None:
    record = answer.record_of(name)
    # In order along the normal (row × column direction: -x for this sagittal orientation,
    # so slices come in decreasing x), whatever order the frames are stored in.
    orientation = np.array(corpus.ENHANCED_ORIENTATION, dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    slices = sorted(range(5), key=lambda n: float(np.dot(corpus.enhanced_position(n), normal)))
    assert slices == [4, 3, 2, 1, 0]
    expected = [corpus.enhanced_pixels(n) > 1024 + 300 for n in slices]

    assert (record["modality"], record["images"]) == (modality, 5)
    assert record["ordered_by"] == "position along the slice normal"
    # Per-frame rescale: the frame stored at half scale reads as the others do.
    assert (record["min"], record["max"]) == (0.0, 1000.0)
    masks = answer.masks(record)
    assert [np.array_equal(m == 255, e) for m, e in zip(masks, expected, strict=True)] == [True] * 5
    # The volume uses the real distance between slices (3 mm), not the nominal thickness.
    assert record["slice_spacing_mm"] == corpus.ENHANCED_SPACING
    voxels = sum(int(e.sum()) for e in expected)
    assert record["mask_voxels"] == voxels
    assert record["mask_volume_mm3"] == pytest.approx(voxels * 0.25 * corpus.ENHANCED_SPACING)


def test_a_multi_frame_rt_dose_is_in_gray_and_ordered_by_its_grid_offsets(answer: Answer) -> None:
    record = answer.record_of("shipped/rtdose.dcm")
    ds = pydicom.dcmread(corpus.PYDICOM_FILES / "rtdose.dcm")
    dose = ds.pixel_array * float(ds.DoseGridScaling)

    assert (record["images"], record["ordered_by"]) == (15, "position along the slice normal")
    assert record["unit"] in {"Gy", "relative dose"}
    assert (record["min"], record["max"]) == pytest.approx((dose.min(), dose.max()))
    assert record["mean"] == pytest.approx(dose.mean(), rel=1e-5)
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    assert record["slice_spacing_mm"] == pytest.approx(abs(offsets[1] - offsets[0]))


@pytest.mark.parametrize(
    "name",
    [
        "generated/rgb.dcm",
        "generated/ybr-full.dcm",
        "generated/ybr-full-422.dcm",
        "generated/rgb-rle-2-frames.dcm",
        "generated/palette.dcm",
    ],
)
def test_colour_images_are_measured_by_their_luma(answer: Answer, name: str) -> None:
    record = answer.record_of(name)
    red, white = corpus.luma(corpus.RED), corpus.luma(corpus.WHITE)
    if name == "generated/palette.dcm":  # 16-bit palette entries
        red, white = red * 257, white * 257
    tolerance = 0.01 * white  # YBR to RGB rounds

    assert record["unit"] == "luma"
    assert record["images"] == (2 if "2-frames" in name else 1)
    assert record["min"] == pytest.approx(red, abs=tolerance)
    assert record["max"] == pytest.approx(white, abs=tolerance)
    assert record["mean"] == pytest.approx((red + white) / 2, abs=tolerance)
    # Otsu splits the red half from the white one.
    for mask in answer.masks(record):
        assert np.array_equal(mask == 255, corpus.colour_halves())
