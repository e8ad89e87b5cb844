"""Axes, LR grids and ranges: the pure numpy arithmetic behind every plot of a curve.

Readable log ticks, snapping a click or a dragged range to the recorded LRs (in log space), and a
y range that keeps a range-test curve readable when its loss explodes. No widgets here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lr_widget.curves.arguments import require_lr

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
YRange = tuple[float, float]

MAX_DRAWN_POINTS = 2000
"""Most points a drawn line sends to the browser: a 10,000-step sweep draws its envelope."""

# Headroom above the highest pre-minimum loss, as a share of its drop to the minimum: enough to
# see the divergence start, not so much that an exploding tail flattens the interesting part.
_Y_HEADROOM = 0.5
_Y_PADDING = 0.05


def decade_ticks(low: float, high: float) -> list[float]:
    """Readable log-axis ticks: the powers of ten in ``[low, high]``, thinned to at most ~10.

    With fewer than two powers of ten in range, the ends are used as well.

    >>> decade_ticks(1e-7, 10.0)[:3]
    [1e-07, 1e-06, 1e-05]
    >>> decade_ticks(2e-4, 8e-4)
    [0.0002, 0.0008]
    """
    first, last = math.ceil(math.log10(low) - 1e-9), math.floor(math.log10(high) + 1e-9)
    exponents = list(range(first, last + 1))
    stride = max(1, math.ceil(len(exponents) / 10))
    ticks = [float(10.0**exponent) for exponent in exponents[::stride]]
    if len(ticks) < 2:
        ticks = sorted({float(low), *ticks, float(high)})
    return ticks


def nearest_index(lrs: ArrayLike, lr: float) -> int:
    """Index of the recorded LR nearest to ``lr`` in log space (ties go to the smaller LR).

    >>> nearest_index([1e-4, 1e-3, 1e-2], 4e-4)  # log-nearer to 1e-3, linearly nearer to 1e-4
    1
    """
    values = np.asarray(lrs, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no recorded LRs to choose from")
    return int(np.argmin(np.abs(np.log10(values) - math.log10(require_lr("lr", lr)))))


def robust_y_range(curve: ArrayLike, raw: ArrayLike = ()) -> tuple[float, float] | None:
    """A y range that keeps the useful part of a loss curve readable when the loss explodes.

    The bottom is the lowest finite point of ``curve`` (or of ``raw``'s 2nd percentile, if lower).
    The top is the highest finite point, capped at the highest ``curve`` value before its
    minimum plus half its drop to the minimum: a diverging tail leaves the plot instead of
    squashing the curve. Both ends get 5% padding. ``None`` if nothing is finite.

    >>> robust_y_range([2.0, 1.0, 1.5, 1e30, float("inf")])
    (0.925, 2.575)
    """
    smooth = _finite(curve)
    noisy = _finite(raw)
    values = smooth if smooth.size else noisy
    if values.size == 0:
        return None
    low = float(values.min())
    noisy_low = noisy_high = math.nan
    if noisy.size:  # one call for both: it redraws a few times a second during a sweep
        noisy_low, noisy_high = (float(q) for q in np.percentile(noisy, [2, 98]))
        low = min(low, noisy_low)
    lowest = int(np.argmin(values))
    before_minimum = float(values[: lowest + 1].max())
    if before_minimum > low:
        cap = before_minimum + _Y_HEADROOM * (before_minimum - low)
        high = min(float(values.max()), cap)
        if noisy.size:
            high = max(high, min(noisy_high, cap))
    else:
        # No drop to measure headroom from (the loss only rises): cap at twice the 90th
        # percentile's distance from the bottom, so a blow-up at the end stays off the plot.
        q90 = float(np.percentile(values, 90))
        high = (
            float(values.max()) if q90 <= low else min(float(values.max()), low + 2 * (q90 - low))
        )
    span = high - low
    pad = _Y_PADDING * span if span > 0 else max(abs(low) * _Y_PADDING, 1e-12)
    return low - pad, high + pad


def _finite(values: ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def nan_for_inf(values: ArrayLike) -> FloatArray:
    """Non-finite values as NaN: bqplot skips NaN points, but draws inf as a spike."""
    array = np.array(values, dtype=np.float64)
    array[~np.isfinite(array)] = np.nan
    return array


def snap_range(lrs: ArrayLike, low: float, high: float) -> tuple[float, float]:
    """The recorded LRs nearest (in log space) to both ends of ``[low, high]``, in order.

    Raises ``ValueError`` when both ends snap to the same recorded LR (the range would be empty).

    >>> snap_range([1e-4, 1e-3, 1e-2, 1e-1], 2.5e-2, 2e-4)
    (0.0001, 0.01)
    """
    values = np.asarray(lrs, dtype=np.float64)
    first, last = sorted((nearest_index(values, low), nearest_index(values, high)))
    ends = sorted((float(values[first]), float(values[last])))
    if not ends[0] < ends[1]:
        raise ValueError(
            f"the range {min(low, high):.3e} to {max(low, high):.3e} covers a single recorded LR "
            f"({ends[0]:.3e}); choose a wider range"
        )
    return ends[0], ends[1]


def union_of_ranges(ranges: Sequence[YRange | None]) -> YRange | None:
    """The smallest range holding every given range (``None`` entries ignored).

    >>> union_of_ranges([(0.0, 1.0), None, (0.5, 2.0)])
    (0.0, 2.0)
    """
    given = [item for item in ranges if item is not None]
    if not given:
        return None
    return min(low for low, _ in given), max(high for _, high in given)


def envelope_indices(values: ArrayLike, max_points: int = MAX_DRAWN_POINTS) -> IntArray:
    """Indices of at most about ``max_points`` points of ``values`` that keep its look.

    All indices when they fit. Otherwise the points are cut into ``max_points // 2`` runs of
    equal length and each run keeps its lowest and highest finite point (so spikes and dips
    survive, unlike every k-th point), plus its first non-finite point (so a gap stays a gap),
    and the first and last points; in increasing order. O(n) with numpy.

    >>> envelope_indices([3.0, 1.0, 2.0], max_points=10).tolist()
    [0, 1, 2]
    >>> values = [0.0] * 100
    >>> values[37] = 5.0
    >>> picked = envelope_indices(values, max_points=10)
    >>> 37 in picked, picked.size <= 12
    (True, True)
    """
    array = np.asarray(values, dtype=np.float64).ravel()
    count = array.size
    if count <= max_points:
        return np.arange(count)
    runs = max(1, max_points // 2)
    width = -(-count // runs)  # ceil
    padded = np.full(runs * width, np.nan)
    padded[:count] = array
    grid = padded.reshape(runs, width)
    finite = np.isfinite(grid)
    offsets = np.arange(runs) * width
    lowest = np.where(finite, grid, np.inf).argmin(axis=1) + offsets
    highest = np.where(finite, grid, -np.inf).argmax(axis=1) + offsets
    gaps = (~finite).argmax(axis=1) + offsets
    has_gap = (~finite).any(axis=1) & (gaps < count)
    picked = np.concatenate([[0, count - 1], lowest, highest, gaps[has_gap]])
    return np.unique(picked[picked < count])


def thin_indices(count: int, max_points: int = MAX_DRAWN_POINTS) -> IntArray:
    """At most ``max_points`` evenly spread indices of ``count`` points, first and last kept.

    >>> thin_indices(5, max_points=3).tolist()
    [0, 2, 4]
    """
    if count <= max_points:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, max_points).round().astype(np.intp))
