"""Where each frame lies: per-frame geometry from a header, and the order of a series' frames.

Enhanced (multi-frame) objects keep position, orientation, spacing and rescale per frame in
the functional groups (a frame's own item in Per-frame Functional Groups, else the Shared
one); classic objects keep them at the top level; an RT dose places its frames by Grid Frame
Offset Vector. Frames are ordered by their position along the slice normal (instance numbers
are often missing, repeated or reversed), and each frame's share of the volume is the real
distance to its neighbours, not the nominal slice thickness.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import median
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

Vector = tuple[float, float, float]


@dataclass(frozen=True, slots=True)
class Frame:
    """One 2-D frame of an image object, as its header describes it."""

    index: int  # the frame's place in its file
    instance: int
    position: Vector | None  # Image Position (Patient) of its first pixel, mm
    orientation: tuple[float, ...] | None  # row and column direction cosines
    pixel_spacing: tuple[float, float] | None  # between rows, between columns, mm
    thickness: float | None  # Spacing Between Slices, else Slice Thickness, mm
    slope: float
    intercept: float


def frames_of(ds: Dataset, count: int) -> list[Frame]:
    """The geometry and rescale of each of the `count` frames of `ds`."""
    instance = _int(ds.get("InstanceNumber"))
    offsets = _floats(ds.get("GridFrameOffsetVector"))
    dose_scaling = _float(ds.get("DoseGridScaling")) or 1.0
    groups = (ds.get("PerFrameFunctionalGroupsSequence"), ds.get("SharedFunctionalGroupsSequence"))
    frames = []
    for index in range(count):
        plane = _group(groups, index, "PlanePositionSequence")
        position = _vector(plane.get("ImagePositionPatient") if plane else None) or _vector(
            ds.get("ImagePositionPatient")
        )
        orientation_item = _group(groups, index, "PlaneOrientationSequence")
        orientation = _floats(
            orientation_item.get("ImageOrientationPatient") if orientation_item else None
        ) or _floats(ds.get("ImageOrientationPatient"))
        if orientation is not None and len(orientation) != 6:
            orientation = None
        if position is not None and offsets is not None and len(offsets) == count:
            position = _dose_plane(position, orientation, offsets, index)
        measures = _group(groups, index, "PixelMeasuresSequence") or ds
        spacing = _floats(measures.get("PixelSpacing")) or _floats(ds.get("PixelSpacing"))
        thickness = _float(measures.get("SpacingBetweenSlices")) or _float(
            measures.get("SliceThickness")
        )
        rescale = _group(groups, index, "PixelValueTransformationSequence") or ds
        slope = _float(rescale.get("RescaleSlope"))
        intercept = _float(rescale.get("RescaleIntercept"))
        frames.append(
            Frame(
                index=index,
                instance=instance,
                position=position,
                orientation=orientation,
                pixel_spacing=(spacing[0], spacing[1]) if spacing and len(spacing) == 2 else None,
                thickness=thickness,
                slope=(1.0 if slope is None else slope) * dose_scaling,
                intercept=intercept or 0.0,
            )
        )
    return frames


@dataclass(frozen=True, slots=True)
class Ordered:
    """A series' frames in order, with each frame's extent along the slice normal (mm)."""

    keys: list[tuple[int, int]]  # (image number in the series, frame index), in order
    extents: dict[tuple[int, int], float | None]
    by_position: bool  # every frame had a position and an orientation
    slice_spacing: float | None
    places: dict[tuple[int, int], int]  # each frame's place in the order, from 1


def order(frames: list[tuple[int, Frame]]) -> Ordered:
    """Order `frames` (image number, frame) along the slice normal, or by instance number."""
    normal = next((_normal(f.orientation) for _, f in frames if f.orientation), None)
    along = {
        (image, f.index): float(np.dot(f.position, normal))
        if normal is not None and f.position is not None
        else None
        for image, f in frames
    }

    def key(item: tuple[int, Frame]) -> tuple[int, float, int, int, int]:
        image, frame = item
        distance = along[(image, frame.index)]
        placed = distance is not None
        return (0 if placed else 1, distance if placed else 0.0, frame.instance, image, frame.index)

    ordered = sorted(frames, key=key)
    # Positions a hair apart are one plane (several frames there: echoes, phases, segments).
    planes = sorted({round(d, 3) for d in along.values() if d is not None})
    plane_extents = _extents(planes)
    extents: dict[tuple[int, int], float | None] = {}
    for image, frame in frames:
        distance = along[(image, frame.index)]
        extent = plane_extents.get(round(distance, 3)) if distance is not None else None
        extents[(image, frame.index)] = extent or frame.thickness
    thicknesses = [f.thickness for _, f in frames if f.thickness]
    keys = [(image, frame.index) for image, frame in ordered]
    return Ordered(
        keys=keys,
        extents=extents,
        by_position=all(d is not None for d in along.values()),
        slice_spacing=(
            median(b - a for a, b in itertools.pairwise(planes))
            if len(planes) > 1
            else (thicknesses[0] if thicknesses else None)
        ),
        places={key: place for place, key in enumerate(keys, start=1)},
    )


def _extents(planes: list[float]) -> dict[float, float]:
    """Each plane's share of the volume: half the distance to each neighbour (one at the ends)."""
    if len(planes) < 2:
        return {}
    extents = {}
    for i, plane in enumerate(planes):
        below = plane - planes[i - 1] if i > 0 else None
        above = planes[i + 1] - plane if i + 1 < len(planes) else None
        extents[plane] = (below + above) / 2 if below and above else (below or above or 0.0)
    return extents


def _normal(orientation: tuple[float, ...] | None) -> np.ndarray | None:
    if orientation is None:
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    length = float(np.linalg.norm(normal))
    return normal / length if length > 1e-6 else None


def _dose_plane(
    position: Vector, orientation: tuple[float, ...] | None, offsets: tuple[float, ...], index: int
) -> Vector:
    """An RT dose frame's position: offsets relative to the first frame when the first is 0,
    else absolute z of axial planes (the standard's two forms)."""
    if offsets[0] != 0:
        return (position[0], position[1], offsets[index])
    normal = _normal(orientation)
    if normal is None:
        normal = np.array([0.0, 0.0, 1.0])
    shifted = np.asarray(position) + offsets[index] * normal
    return (float(shifted[0]), float(shifted[1]), float(shifted[2]))


def _group(groups: tuple[Any, Any], index: int, keyword: str) -> Dataset | None:
    """A functional-group item for frame `index`: the frame's own, else the shared one."""
    per_frame, shared = groups
    for container, item_index in ((per_frame, index), (shared, 0)):
        if container and item_index < len(container):
            sequence = container[item_index].get(keyword)
            if sequence:
                return sequence[0]
    return None


def _floats(value: object) -> tuple[float, ...] | None:
    """A header value as finite numbers, or None when it is missing or not numbers."""
    if value is None or isinstance(value, str | bytes):
        return None
    items = value if isinstance(value, Iterable) else [value]
    try:
        numbers = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None
    return numbers if numbers and all(math.isfinite(n) for n in numbers) else None


def _vector(value: object) -> Vector | None:
    numbers = _floats(value)
    return (numbers[0], numbers[1], numbers[2]) if numbers and len(numbers) == 3 else None


def _float(value: object) -> float | None:
    numbers = _floats(value)
    return numbers[0] if numbers else None


def _int(value: object) -> int:
    number = _float(value)
    return int(number) if number is not None else 0
