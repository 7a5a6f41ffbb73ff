"""Streamed statistics equal the ones computed over the whole study at once, in any order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from examples.dicom_stats.streaming import BINS, Histogram, Moments, otsu_threshold

finite = st.floats(-1e7, 1e7, allow_nan=False, allow_infinity=False, width=64)
frames = st.lists(arrays(np.float64, st.integers(1, 300), elements=finite), min_size=1, max_size=6)


def histogram_of(parts: list[np.ndarray]) -> Histogram:
    histogram = Histogram()
    for part in parts:
        histogram.add(part, float(part.min()), float(part.max()))
    return histogram


@settings(max_examples=200, deadline=None)
@given(frames)
def test_moments_of_the_frames_are_those_of_all_the_values(parts: list[np.ndarray]) -> None:
    moments = Moments()
    for part in parts:
        moments.add(part)
    values = np.concatenate(parts)

    assert moments.count == values.size
    assert (moments.minimum, moments.maximum) == (values.min(), values.max())
    scale = max(1.0, float(np.abs(values).max()))
    assert moments.mean == pytest.approx(values.mean(), abs=1e-9 * scale)
    assert moments.std == pytest.approx(values.std(), abs=1e-6 * scale)


@settings(max_examples=200, deadline=None)
@given(frames)
def test_the_histogram_counts_every_value_in_its_bin_in_any_order(parts: list[np.ndarray]) -> None:
    forward = histogram_of(parts)
    backward = Histogram()
    for part in reversed(parts):
        backward.merge(histogram_of([part]))
    values = np.concatenate(parts)

    # Merged frame by frame in the other order the bins may be wider, but each histogram
    # holds exactly the values that fall in each of its bins.
    for histogram in (forward, backward):
        index = np.floor(values / histogram.width).astype(np.int64) - histogram.first
        assert index.min() >= 0
        assert index.max() < BINS
        assert np.array_equal(histogram.counts, np.bincount(index, minlength=BINS))


def test_otsu_splits_two_groups_in_the_middle_of_the_gap() -> None:
    values = np.concatenate([np.full(500, 0.0), np.full(300, 1000.0)])
    histogram = histogram_of([values[:400], values[400:]])
    threshold = otsu_threshold(histogram)

    assert threshold == pytest.approx(500, abs=2 * histogram.width)
    assert int((values >= threshold).sum()) == 300


def test_otsu_separates_two_noisy_classes() -> None:
    rng = np.random.default_rng(5)
    low, high = rng.normal(100, 10, 20_000), rng.normal(400, 30, 5_000)
    threshold = otsu_threshold(histogram_of([low, high]))

    assert 150 < threshold < 300
