"""Spread across repeated runs: the noise band of their curves, the spread of their suggestions,
and whether a rise of the median curve (of the runs' lag-free fits) is larger than the noise.

Pure numpy on arrays and :class:`~lr_widget.suggestions.Suggestion` objects; the runs themselves
live in :class:`lr_widget.results.repeated.RepeatedRangeTest`, which builds these.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lr_widget.suggestions.curve import Suggestion

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class _Curve(Protocol):
    """Anything with recorded LRs and the smoothed curve over them (a single run's result)."""

    @property
    def lrs(self) -> Sequence[float]: ...

    @property
    def curve(self) -> FloatArray: ...


# -- the band ---------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class NoiseBand:
    """Per-step statistics of several curves on one LR grid, ready to draw.

    At step ``i`` the statistics use the curves that reached step ``i`` with a finite value;
    ``count[i]`` says how many did. Where none did, ``median``, ``low`` and ``high`` are NaN.

    Attributes
    ----------
    lrs : ndarray
        The shared LR grid (the longest run's LRs).
    median, low, high : ndarray
        Per-step median, minimum and maximum of the curves: the band is the full spread of the
        runs. With ``k`` exchangeable runs, a further run lands inside ``[low, high]`` at a given
        step with probability ``(k - 1) / (k + 1)`` (2/3 for 5 runs).
    count : ndarray of int
        Curves contributing at each step. The band is degenerate (zero width) where it is 1.
    curves : ndarray
        The curves themselves, shape ``(runs, steps)``, NaN past a run's end: one thin line per
        run (bqplot's ``Lines`` takes this 2-D ``y`` directly).

    Examples
    --------
    >>> band = NoiseBand.from_curves([1e-3, 1e-2, 1e-1], [[1.0, 0.5, 2.0], [1.5, 0.75]])
    >>> band.median.tolist(), band.low.tolist(), band.high.tolist(), band.count.tolist()
    ([1.25, 0.625, 2.0], [1.0, 0.5, 2.0], [1.5, 0.75, 2.0], [2, 2, 1])
    """

    lrs: FloatArray
    median: FloatArray
    low: FloatArray
    high: FloatArray
    count: IntArray
    curves: FloatArray

    @property
    def width(self) -> FloatArray:
        """``high - low`` at every step: the size of a rise that noise alone can make there."""
        return self.high - self.low

    @classmethod
    def from_curves(cls, lrs: ArrayLike, curves: Iterable[ArrayLike]) -> NoiseBand:
        """The band of ``curves`` (each at most ``len(lrs)`` long, aligned at step 0)."""
        grid = np.asarray(lrs, dtype=np.float64).reshape(-1)
        rows = [np.asarray(curve, dtype=np.float64).reshape(-1) for curve in curves]
        matrix = np.full((len(rows), grid.size), np.nan)
        for index, row in enumerate(rows):
            if row.size > grid.size:
                raise ValueError(
                    f"curve {index} has {row.size} points but the LR grid only {grid.size}"
                )
            matrix[index, : row.size] = row
        matrix[~np.isfinite(matrix)] = np.nan
        count = np.isfinite(matrix).sum(axis=0).astype(np.int64)
        median, low, high = (np.full(grid.size, np.nan) for _ in range(3))
        reached = count > 0
        if reached.any():  # nan-reductions warn on all-NaN columns: leave those NaN
            median[reached] = np.nanmedian(matrix[:, reached], axis=0)
            low[reached] = np.nanmin(matrix[:, reached], axis=0)
            high[reached] = np.nanmax(matrix[:, reached], axis=0)
        return cls(grid, median, low, high, count, matrix)

    @classmethod
    def from_result(cls, result: _Curve) -> NoiseBand:
        """A single run as a band of zero width (``count`` 1), so single and repeated results
        draw through the same code."""
        return cls.from_curves(result.lrs, [result.curve])

    def inside(self, curve: ArrayLike) -> NDArray[np.bool_]:
        """Per step, whether ``curve`` (on this grid, possibly shorter) lies within the band;
        ``False`` where either is missing."""
        values = np.asarray(curve, dtype=np.float64).reshape(-1)[: self.lrs.size]
        padded = np.full(self.lrs.size, np.nan)
        padded[: values.size] = values
        with np.errstate(invalid="ignore"):
            return np.asarray((padded >= self.low) & (padded <= self.high), dtype=np.bool_)


# -- bumps ------------------------------------------------------------------------------------
MIN_RUNS_TO_JUDGE = 3
"""Fewest runs reaching both ends of a rise for it to be judged real or noise."""


@dataclass(frozen=True)
class Bump:
    """A rise of the median curve, from its foot (lowest point) to its peak, and whether it is
    larger than the noise.

    The rise is **real** when the band at the peak lies entirely above the band at the foot
    (``gap > 0``): every run is higher at the peak than every run at the foot. If the ``2k``
    values of ``k`` runs at the two LRs were exchangeable (no real rise), that would happen by
    chance with probability ``1 / C(2k, k)`` (:attr:`chance`: 1 in 20 for 3 runs, 1 in 252 for
    5). So at least :data:`MIN_RUNS_TO_JUDGE` (3) runs must reach both points; with 2 the bands
    separate by chance 1 time in 6, too often to call anything real.

    Attributes
    ----------
    foot_index, peak_index : int
        Steps of the foot and of the peak on the shared grid.
    foot_lr, peak_lr : float
        Their LRs.
    rise : float
        ``median[peak] - median[foot]``.
    gap : float
        ``low[peak] - high[foot]``: positive when the bands do not overlap.
    runs : int
        Runs with a finite value at both points.
    runs_rising : int
        Of those, the runs whose own curve is higher at the peak (a paired view of the same rise).

    Examples
    --------
    >>> bump = Bump(10, 20, 1e-3, 1e-2, rise=0.3, gap=0.1, runs=5, runs_rising=5)
    >>> bump.significant
    True
    """

    foot_index: int
    peak_index: int
    foot_lr: float
    peak_lr: float
    rise: float
    gap: float
    runs: int
    runs_rising: int

    @property
    def significant(self) -> bool:
        """Whether the rise is larger than the noise: bands apart, enough runs to tell."""
        return self.runs >= MIN_RUNS_TO_JUDGE and self.gap > 0

    @property
    def chance(self) -> float:
        """``1 / C(2k, k)``: how often ``k`` runs' bands separate this way by chance alone."""
        return 1.0 / math.comb(2 * self.runs, self.runs)

    def describe(self) -> str:
        """One line for a tooltip or status bar."""
        where = f"rise {self.foot_lr:.1e} to {self.peak_lr:.1e}: median +{self.rise:.3g}"
        rising = f"{self.runs_rising} of {self.runs} runs rise"
        if self.runs < MIN_RUNS_TO_JUDGE:
            return (
                f"{where}; only {self.runs} run(s) reach both points: too few to judge "
                f"(need {MIN_RUNS_TO_JUDGE})"
            )
        if self.significant:
            odds = f"1 in {round(1 / self.chance)} by chance"
            return f"{where}; real: the bands are {self.gap:.3g} apart ({odds}), {rising}"
        return f"{where}; within noise: the bands overlap by {-self.gap:.3g}, {rising}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary (adds ``significant`` and ``description`` for readers)."""
        return {
            "foot_index": self.foot_index,
            "peak_index": self.peak_index,
            "foot_lr": self.foot_lr,
            "peak_lr": self.peak_lr,
            "rise": self.rise,
            "gap": self.gap,
            "runs": self.runs,
            "runs_rising": self.runs_rising,
            "significant": self.significant,
            "chance": self.chance,
            "description": self.describe(),
        }


def largest_rise(median: FloatArray, first: int, last: int) -> tuple[int, int] | None:
    """``(foot, peak)`` with ``first <= foot < peak <= last`` maximising the median's rise."""
    best: tuple[int, int] | None = None
    best_rise, foot = 0.0, -1
    for index in range(first, last + 1):
        value = median[index]
        if not math.isfinite(value):
            continue
        if foot < 0 or value < median[foot]:
            foot = index
        elif value - median[foot] > best_rise:
            best, best_rise = (foot, index), float(value - median[foot])
    return best


def rising_stretches(band: NoiseBand) -> list[tuple[int, int]]:
    """Index ranges of the median's rises; a dip between two rises that stays within the band
    there is noise and does not split them."""
    median = band.median
    with np.errstate(invalid="ignore"):
        rising = np.diff(median) > 0
    stretches: list[tuple[int, int]] = []
    for start in np.flatnonzero(rising & ~np.concatenate(([False], rising[:-1]))):
        end = int(start)
        while end < rising.size and rising[end]:
            end += 1
        if stretches and _peak_value(median, *stretches[-1]) - median[start] <= band.width[start]:
            stretches[-1] = (stretches[-1][0], end)
        else:
            stretches.append((int(start), end))
    return stretches


def _peak_value(median: FloatArray, first: int, last: int) -> float:
    return float(np.nanmax(median[first : last + 1]))


# -- suggestions ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SuggestionSpread:
    """One rule's picks over the runs: their geometric median and range.

    Examples
    --------
    >>> picks = [Suggestion("valley", lr, 0, 1.0, "") for lr in (2e-3, 3e-3, 5e-3)]
    >>> SuggestionSpread("valley", tuple(picks)).describe()
    'valley 3.0e-03, 2.0e-03 to 5.0e-03 (2.5x) over 3 runs'
    """

    rule: str
    suggestions: tuple[Suggestion, ...]

    @property
    def lrs(self) -> list[float]:
        """The LRs of the runs that gave an answer."""
        return [s.lr for s in self.suggestions if s.lr is not None]

    @property
    def median_lr(self) -> float | None:
        """The geometric median (median in log space) of the picks; ``None`` without any."""
        lrs = self.lrs
        return float(10 ** np.median(np.log10(lrs))) if lrs else None

    @property
    def low_lr(self) -> float | None:
        """The smallest pick."""
        return min(self.lrs, default=None)

    @property
    def high_lr(self) -> float | None:
        """The largest pick."""
        return max(self.lrs, default=None)

    def describe(self) -> str:
        """``"valley 3.0e-03, 2.0e-03 to 5.0e-03 (2.5x) over 5 runs"``."""
        lrs, total = self.lrs, len(self.suggestions)
        if not lrs:
            return f"{self.rule}: no answer in any of {total} runs"
        low, high, median = min(lrs), max(lrs), self.median_lr
        over = f"over {total} runs" if len(lrs) == total else f"over {len(lrs)} of {total} runs"
        return f"{self.rule} {median:.1e}, {low:.1e} to {high:.1e} ({high / low:.2g}x) {over}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dictionary of the per-run picks and the summary."""
        return {
            "rule": self.rule,
            "suggestions": [s.to_dict() for s in self.suggestions],
            "median_lr": self.median_lr,
            "low_lr": self.low_lr,
            "high_lr": self.high_lr,
            "description": self.describe(),
        }
