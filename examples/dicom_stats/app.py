"""Example MAP: per-series statistics and threshold masks for every DICOM image in the input.

Reads each DICOM file under the input folder (any layout), groups the images by series, and
writes to the output folder:

    summary.json                     one entry per series: modality, size, intensity statistics
    masks/<series>/<instance>.png    a threshold mask per image: bone (> 300 HU) for CT,
                                     Otsu's threshold for other modalities

Files that are not DICOM are reported and skipped. Run it by hand with
`python app.py --input IN --output OUT`, or let MIS run it (see mis.yaml beside this file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image
from pydicom.errors import InvalidDicomError

BONE_HU = 300.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=os.environ.get("MONAI_INPUTPATH"))
    parser.add_argument("--output", type=Path, default=os.environ.get("MONAI_OUTPUTPATH"))
    options = parser.parse_args()
    if options.input is None or options.output is None:
        parser.error("give --input and --output (or set MONAI_INPUTPATH and MONAI_OUTPUTPATH)")

    series: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    skipped = 0
    for path in sorted(p for p in options.input.rglob("*") if p.is_file()):
        try:
            dataset = pydicom.dcmread(path)
            dataset.pixel_array  # noqa: B018 - fails early for images we cannot decode
        except (
            InvalidDicomError,
            AttributeError,
            ValueError,
            NotImplementedError,
            RuntimeError,
        ) as exc:
            print(f"skipping a file that is not a readable DICOM image ({type(exc).__name__})")
            skipped += 1
            continue
        series[str(dataset.get("SeriesInstanceUID", "unknown-series"))].append(dataset)

    if not series:
        print("no DICOM images found in the input", file=sys.stderr)
        return 2

    summary = {"series": [], "skipped_files": skipped}
    for number, (uid, images) in enumerate(sorted(series.items()), start=1):
        images.sort(key=lambda ds: int(ds.get("InstanceNumber", 0) or 0))
        summary["series"].append(analyse_series(number, uid, images, options.output))
        print(f"series {number}: {len(images)} image(s), {images[0].get('Modality', '?')}")

    (options.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote summary of {len(series)} series")
    return 0


def analyse_series(number: int, uid: str, images: list[pydicom.Dataset], output: Path) -> dict:
    modality = str(images[0].get("Modality", "OT"))
    volume = [intensities(ds) for ds in images]
    values = np.concatenate([v.ravel() for v in volume])
    threshold = BONE_HU if modality == "CT" else otsu_threshold(values)
    mask_folder = output / "masks" / f"series-{number:03d}"
    mask_folder.mkdir(parents=True, exist_ok=True)
    mask_voxels = 0
    for index, image in enumerate(volume, start=1):
        mask = image > threshold
        mask_voxels += int(mask.sum())
        Image.fromarray((mask * 255).astype(np.uint8)).save(mask_folder / f"{index:04d}.png")
    spacing = [float(s) for s in images[0].get("PixelSpacing", [1.0, 1.0])]
    thickness = float(images[0].get("SliceThickness", 1.0) or 1.0)
    return {
        "series_instance_uid": uid,
        "modality": modality,
        "images": len(images),
        "rows": int(images[0].Rows),
        "columns": int(images[0].Columns),
        "unit": "HU" if modality == "CT" else "stored value",
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": round(float(values.mean()), 3),
        "std": round(float(values.std()), 3),
        "threshold": round(float(threshold), 3),
        "threshold_rule": f"> {BONE_HU:g} HU (bone)" if modality == "CT" else "Otsu",
        "mask_fraction": round(mask_voxels / values.size, 6),
        "mask_volume_mm3": round(mask_voxels * spacing[0] * spacing[1] * thickness, 3),
        "mask_folder": mask_folder.relative_to(output).as_posix(),
    }


def intensities(dataset: pydicom.Dataset) -> np.ndarray:
    """Pixel values in their real unit (Hounsfield units for CT) via the rescale tags."""
    pixels = dataset.pixel_array.astype(np.float64)
    if pixels.ndim == 3 and dataset.get("SamplesPerPixel", 1) == 3:
        pixels = pixels.mean(axis=-1)
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    return pixels * slope + intercept


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that best separates the values into two classes (Otsu, 1979)."""
    histogram, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight_low = np.cumsum(histogram)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(histogram * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    return float(centres[int(np.argmax(between))])


if __name__ == "__main__":
    sys.exit(main())
