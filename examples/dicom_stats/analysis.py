"""One series: statistics streamed frame by frame, a threshold, and a mask per frame.

CT's threshold is fixed (bone, > 300 HU), so its masks are written as its frames are first
decoded: one pass. Otsu's threshold needs the whole series' histogram, so other series are
decoded twice: once for the statistics, once for the masks. Either way one frame is in
memory at a time. A file whose frames fail to decode is left out whole (its statistics are
merged only once every frame has decoded) and listed as skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


@dataclass(frozen=True)
class _Mask:
    path: Path
    key: tuple[int, int]  # (image number in the series, frame index)
    voxels: int


@dataclass
class _Pass:
    """What one pass over one file gave: its statistics, and the masks it wrote."""

    totals: _Totals = field(default_factory=_Totals)
    masks: dict[int, _Mask] = field(default_factory=dict)  # by place in the series' order

    def merge(self, other: _Pass) -> None:
        self.totals.merge(other.totals)
        self.masks.update(other.masks)


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
            place = ordered.places[key]
            path = folder / f"{place:04d}.png"
            # Level 1: about half the time of the default, and a mask still packs to ~2 KB.
            PngImage.fromarray(mask.view(np.uint8) * np.uint8(255)).save(path, compress_level=1)
            result.masks[place] = _Mask(path, key, int(np.count_nonzero(mask)))
    except BaseException:
        for written in result.masks.values():
            written.path.unlink(missing_ok=True)
        raise
    return result


def analyse(
    number: int, images: list[Image], output: Path
) -> tuple[dict[str, Any] | None, list[Skipped]]:
    """The summary record of one series (None if no file of it decoded) and its skipped files."""
    ordered = order([(i, frame) for i, image in enumerate(images) for frame in image.frames])
    first = images[0]
    fixed = BONE_HU if first.modality == "CT" and not first.colour else None
    # MONOCHROME1 shows low values bright: the mask is the part shown bright, as in MONOCHROME2
    low_is_bright = first.photometric == "MONOCHROME1" and fixed is None
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
        rule = _below(threshold) if low_is_bright else _at_or_above(threshold)
        each_file(decoded_once, rule, stats=False)

    # Geometry from the files that decoded: a skipped one must not widen a slice's extent.
    final = order([(i, frame) for i in usable for frame in images[i].frames])
    voxels = sum(mask.voxels for mask in series.masks.values())
    volume = _volume(series.masks.values(), final, images)
    images_written = _renumber(series.masks, folder)
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
        "images": images_written,
        "rows": first.rows,
        "columns": first.columns,
        "ordered_by": "position along the slice normal" if final.by_position else "instance number",
        "row_spacing_mm": row,
        "column_spacing_mm": column,
        "slice_spacing_mm": _round(final.slice_spacing, 4),
        "unit": first.unit,
        "min": _significant(moments.minimum),
        "max": _significant(moments.maximum),
        "mean": _significant(moments.mean),
        "std": _significant(moments.std),
        "threshold": _significant(threshold),
        "threshold_rule": (
            f"> {BONE_HU:g} HU (bone)"
            if fixed is not None
            else "< threshold (Otsu; MONOCHROME1 shows low values bright)"
            if low_is_bright
            else "≥ threshold (Otsu)"
        ),
        "mask_voxels": voxels,
        "mask_fraction": round(voxels / moments.count, 6) if moments.count else 0.0,
        "mask_volume_mm3": _round(volume, 3),
        "mask_folder": folder.relative_to(output).as_posix(),
    }, skipped


def _above(threshold: float | None) -> Rule | None:
    return None if threshold is None else lambda values: values > threshold


def _at_or_above(threshold: float) -> Rule:
    return lambda values: values >= threshold


def _below(threshold: float) -> Rule:
    return lambda values: values < threshold


def _volume(masks: Iterable[_Mask], ordered: Ordered, images: list[Image]) -> float | None:
    """The masked volume: each frame's voxels × pixel area × its extent along the normal;
    None when a frame's spacing is unknown (a photo, an ultrasound sweep)."""
    volume = 0.0
    for mask in masks:
        image, index = mask.key
        spacing, extent = images[image].frames[index].pixel_spacing, ordered.extents[mask.key]
        if not (spacing and extent):
            return None
        volume += mask.voxels * spacing[0] * spacing[1] * extent
    return volume


def _renumber(masks: dict[int, _Mask], folder: Path) -> int:
    """Close the gaps a skipped file left in the masks' numbering; the number of masks."""
    for number, place in enumerate(sorted(masks), start=1):
        if number != place:  # always lower: never onto a mask still to be moved
            masks[place].path.rename(folder / f"{number:04d}.png")
    return len(masks)


def _significant(value: float) -> float:
    """Six significant digits: as exact as a summary needs, in any unit (HU, Gy, luma)."""
    return float(f"{value:.6g}")


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)
