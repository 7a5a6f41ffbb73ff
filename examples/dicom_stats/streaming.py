"""Statistics of a series seen one frame at a time, so memory holds one frame, not the study.

`Moments` keeps the exact count, minimum, maximum, mean and spread (merged frame by frame with
Chan's pairwise update, which stays accurate where summing squares would not). `Histogram`
keeps a fixed number of bins whose width doubles as the values' range grows, so it needs no
range up front; Otsu's threshold is taken from it. Both can be merged, so a file's frames are
added to its series only once the whole file has decoded.
"""

from __future__ import annotations

import math

import numpy as np

BINS = 4096
MIN_EXPONENT = -64  # the narrowest bin, 2**-64: only a constant frame gets it


class Moments:
    """Exact count, minimum, maximum, mean and variance of every value added."""

    def __init__(self) -> None:
        self.count = 0
        self.minimum = math.inf
        self.maximum = -math.inf
        self.mean = 0.0
        self._m2 = 0.0  # sum of squared differences from the mean

    def add(self, values: np.ndarray) -> None:
        """Add a 1-D float64 array of finite values."""
        if values.size == 0:
            return
        other = Moments()
        other.count = int(values.size)
        other.minimum = float(values.min())
        other.maximum = float(values.max())
        other.mean = float(values.sum()) / other.count
        deviations = values - other.mean
        other._m2 = float(np.dot(deviations, deviations))
        self.merge(other)

    def merge(self, other: Moments) -> None:
        if other.count == 0:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self._m2 += other._m2 + delta * delta * self.count * other.count / total
        self.mean += delta * other.count / total
        self.count = total
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    @property
    def std(self) -> float:
        """The population standard deviation (what numpy's `std` gives)."""
        return math.sqrt(self._m2 / self.count) if self.count else 0.0


class Histogram:
    """Counts in `BINS` bins [k·w, (k+1)·w), w a power of two, widened as values arrive.

    Widening merges pairs of bins exactly (old edges are new edges), so the counts never
    depend on the order the frames came in beyond that resolution.
    """

    def __init__(self) -> None:
        self.counts = np.zeros(BINS, dtype=np.int64)
        self.exponent = 0  # the bin width is 2**exponent
        self.first = 0  # the index k of the first bin
        self.empty = True

    @property
    def width(self) -> float:
        return math.ldexp(1.0, self.exponent)

    def add(self, values: np.ndarray, low: float, high: float) -> None:
        """Add a 1-D float64 array of finite values whose minimum and maximum are given."""
        if values.size == 0:
            return
        self._cover(low, high)
        index = np.floor(values * (1.0 / self.width)).astype(np.int64)
        index -= self.first
        self.counts += np.bincount(index, minlength=BINS)[:BINS]

    def merge(self, other: Histogram) -> None:
        if other.empty:
            return
        occupied = np.flatnonzero(other.counts)
        low = (other.first + occupied[0]) * other.width
        high = (other.first + occupied[-1]) * other.width
        self._cover(low, high, at_least=other.exponent)
        index = self._rebinned(other.first + occupied, other.exponent)
        np.add.at(self.counts, index, other.counts[occupied])

    def edge(self, bin_index: int) -> float:
        """The lower edge of bin `bin_index` (0 ≤ index ≤ BINS)."""
        return (self.first + bin_index) * self.width

    def _cover(self, low: float, high: float, at_least: int = MIN_EXPONENT) -> None:
        """Widen (never narrow) the bins until [low, high] and what is counted fit."""
        exponent = at_least
        if not self.empty:
            occupied = np.flatnonzero(self.counts)
            low = min(low, self.edge(int(occupied[0])))
            high = max(high, self.edge(int(occupied[-1])))
            exponent = max(exponent, self.exponent)
        spread = (high - low) / (BINS - 1)
        if spread > 0:
            exponent = max(exponent, math.ceil(math.log2(spread)))
        largest = max(abs(low), abs(high))
        if largest > 0:  # keeps bin indices far inside int64 whatever the values' magnitude
            exponent = max(exponent, math.frexp(largest)[1] - 48)
        while _index(high, exponent) - _index(low, exponent) >= BINS:
            exponent += 1
        first = _index(low, exponent)
        if self.empty:
            self.exponent, self.first, self.empty = exponent, first, False
            return
        if (exponent, first) == (self.exponent, self.first):
            return
        occupied = np.flatnonzero(self.counts)
        old_index, old_exponent, counts = (
            self.first + occupied,
            self.exponent,
            self.counts[occupied],
        )
        self.exponent, self.first = exponent, first
        self.counts = np.zeros(BINS, dtype=np.int64)
        np.add.at(self.counts, self._rebinned(old_index, old_exponent), counts)

    def _rebinned(self, index: np.ndarray, exponent: int) -> np.ndarray:
        """Bin indices at width 2**exponent (not above ours) as indices into our bins."""
        return np.right_shift(index, min(self.exponent - exponent, 63)) - self.first


def _index(value: float, exponent: int) -> int:
    return math.floor(value / math.ldexp(1.0, exponent))


def otsu_threshold(histogram: Histogram) -> float:
    """Otsu's threshold (1979): the bin edge that best splits the counts into two classes.

    Values at or above it form the upper class. Where several edges split equally well (an
    empty stretch between two peaks), the one in the middle of that stretch.
    """
    counts = histogram.counts.astype(np.float64)
    centres = (histogram.first + np.arange(BINS) + 0.5) * histogram.width
    weight_low = np.cumsum(counts)
    weight_high = weight_low[-1] - weight_low
    sum_low = np.cumsum(counts * centres)
    mean_low = sum_low / np.maximum(weight_low, 1)
    mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
    between = weight_low * weight_high * (mean_low - mean_high) ** 2
    best = int(np.argmax(between))
    last = best
    while last + 1 < BINS and between[last + 1] == between[best]:
        last += 1
    return histogram.edge((best + last) // 2 + 1)
