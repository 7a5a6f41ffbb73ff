"""One series: statistics streamed frame by frame, a threshold, and a mask per frame.

CT's threshold is fixed (bone, > 300 HU), so its masks are written as its frames are first
decoded: one pass. Otsu's threshold needs the whole series' histogram, so other series are
decoded twice: once for the statistics, once for the masks. Either way one frame is in
memory at a time. A file whose frames fail to decode is left out whole (its statistics are
merged only once every frame has decoded) and listed as skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PngImage

from geometry import Ordered, order
from headers import CANNOT_DECODE, Image, Skipped, describe
from pixels import decoded
from streaming import Histogram, Moments, otsu_threshold

BONE_HU = 300.0


@dataclass
class _Totals:
    moments: Moments = field(default_factory=Moments)
    histogram: Histogram = field(default_factory=Histogram)

    def add(self, values: np.ndarray) -> None:
        flat = values.ravel()
        low, high = float(flat.min()), float(flat.max())
        if not (np.isfinite(low) and np.isfinite(high)):  # float pixel data may hold NaN, inf
            flat = flat[np.isfinite(flat)]
            if flat.size == 0:
                return
            low, high = float(flat.min()), float(flat.max())
        self.moments.add(flat)
        self.histogram.add(flat, low, high)

    def merge(self, other: _Totals) -> None:
        self.moments.merge(other.moments)
        self.histogram.merge(other.histogram)


@dataclass
class _Pass:
    """What one pass over one file gave: its statistics, and the masks it wrote."""

    totals: _Totals = field(default_factory=_Totals)
    paths: list[Path] = field(default_factory=list)
    voxels: int = 0
    volume_mm3: float | None = 0.0  # None once a masked frame's spacing is unknown

    def merge(self, other: _Pass) -> None:
        self.totals.merge(other.totals)
        self.paths += other.paths
        self.voxels += other.voxels
        if self.volume_mm3 is not None:
            self.volume_mm3 = (
                None if other.volume_mm3 is None else self.volume_mm3 + other.volume_mm3
            )


Rule = Callable[[np.ndarray], np.ndarray]


def _read(
    number: int, image: Image, ordered: Ordered, folder: Path, rule: Rule | None, stats: bool
) -> _Pass:
    """Decode one file frame by frame: add to the statistics, write masks by `rule`.

    A file that fails part-way leaves nothing behind: its masks are removed, and its
    statistics were never merged."""
    result = _Pass()
    try:
        for frame, values in decoded(image):
            if stats:
                result.totals.add(values)
            if rule is None:
                continue
            mask = rule(values)
            key = (number, frame.index)
            path = folder / f"{ordered.places[key]:04d}.png"
            PngImage.fromarray(mask.view(np.uint8) * np.uint8(255)).save(path)
            result.paths.append(path)
            count = int(np.count_nonzero(mask))
            result.voxels += count
            extent = ordered.extents[key]
            if result.volume_mm3 is not None and frame.pixel_spacing and extent:
                result.volume_mm3 += (
                    count * frame.pixel_spacing[0] * frame.pixel_spacing[1] * extent
                )
            else:
                result.volume_mm3 = None
    except BaseException:
        for path in result.paths:
            path.unlink(missing_ok=True)
        raise
    return result


def analyse(
    number: int, images: list[Image], output: Path
) -> tuple[dict[str, Any] | None, list[Skipped]]:
    """The summary record of one series (None if no file of it decoded) and its skipped files."""
    ordered = order([(i, frame) for i, image in enumerate(images) for frame in image.frames])
    first = images[0]
    fixed = BONE_HU if first.modality == "CT" and not first.colour else None
    folder = output / "masks" / f"series-{number:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    series = _Pass()
    skipped: list[Skipped] = []
    usable: list[int] = []

    def each_file(files: list[int], rule: Rule | None, stats: bool) -> None:
        for i in files:
            try:
                result = _read(i, images[i], ordered, folder, rule, stats)
            except Exception as exc:  # a decoder can fail on bad data in many ways
                skipped.append(Skipped(images[i].file, CANNOT_DECODE, describe(exc)))
                continue
            series.merge(result)
            usable.append(i)

    # Files in the order of their first frame in the series.
    each_file(list(dict.fromkeys(i for i, _ in ordered.keys)), _above(fixed), stats=True)
    if not usable:
        folder.rmdir()
        return None, skipped
    threshold = fixed if fixed is not None else otsu_threshold(series.totals.histogram)
    if fixed is None:
        decoded_once, usable[:] = list(usable), []
        each_file(decoded_once, _at_or_above(threshold), stats=False)

    moments = series.totals.moments
    row, column = next(
        (f.pixel_spacing for i in usable for f in images[i].frames if f.pixel_spacing),
        (None, None),
    )
    syntaxes = {images[i].transfer_syntax.name for i in usable}
    return {
        "series_instance_uid": first.series_uid,
        "modality": first.modality,
        "sop_class": first.sop_class,
        "transfer_syntax": syntaxes.pop() if len(syntaxes) == 1 else "mixed",
        "photometric_interpretation": first.photometric,
        "files": len(usable),
        "images": len(series.paths),
        "rows": first.rows,
        "columns": first.columns,
        "ordered_by": "position along the slice normal"
        if ordered.by_position
        else "instance number",
        "row_spacing_mm": row,
        "column_spacing_mm": column,
        "slice_spacing_mm": _round(ordered.slice_spacing, 4),
        "unit": first.unit,
        "min": _significant(moments.minimum),
        "max": _significant(moments.maximum),
        "mean": _significant(moments.mean),
        "std": _significant(moments.std),
        "threshold": _significant(threshold),
        "threshold_rule": f"> {BONE_HU:g} HU (bone)" if fixed is not None else "≥ threshold (Otsu)",
        "mask_voxels": series.voxels,
        "mask_fraction": round(series.voxels / moments.count, 6) if moments.count else 0.0,
        "mask_volume_mm3": _round(series.volume_mm3, 3),
        "mask_folder": folder.relative_to(output).as_posix(),
    }, skipped


def _above(threshold: float | None) -> Rule | None:
    return None if threshold is None else lambda values: values > threshold


def _at_or_above(threshold: float) -> Rule:
    return lambda values: values >= threshold


def _significant(value: float) -> float:
    """Six significant digits: as exact as a summary needs, in any unit (HU, Gy, luma)."""
    return float(f"{value:.6g}")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
