"""The few statistics the benchmarks report: medians, pairwise ratios, regrets, geometric means.

Timings on a shared machine are noisy, so no absolute time is compared across contenders: each
repetition runs every contender once (interleaved), a contender's ratio to the baseline is taken
within each repetition, and the median of those ratios is reported.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

__all__ = [
    "geometric_mean",
    "median",
    "median_interval",
    "pairwise_ratios",
    "quartiles",
    "regret",
]


def median(values: Sequence[float]) -> float:
    """The median of ``values``; NaN when there are none."""
    return statistics.median(values) if values else math.nan


def quartiles(values: Sequence[float]) -> tuple[float, float]:
    """The first and third quartiles of ``values``: half of them lie in between.

    >>> quartiles([1.0, 2.0, 3.0, 4.0, 5.0])
    (1.5, 4.5)
    """
    if not values:
        return (math.nan, math.nan)
    if len(values) == 1:
        return (values[0], values[0])
    first, _, third = statistics.quantiles(values, n=4)
    return (first, third)


def median_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free ``confidence`` interval for the median of what ``values`` sample.

    The interval runs from the k-th smallest to the k-th largest value, with k the largest
    count such that fewer than k of n independent draws fall below the median with probability
    at most ``(1 - confidence) / 2`` (binomial with p = 1/2); NaNs when n is too small for any.

    >>> median_interval(list(range(1, 42)))  # 41 values: the 14th smallest to the 14th largest
    (14, 28)
    >>> median_interval([1.0, 2.0, 3.0])
    (nan, nan)
    """
    n = len(values)
    tail = (1.0 - confidence) / 2
    below, k = 0.0, 0
    while k < n // 2 and below + math.comb(n, k) / 2**n <= tail:
        below += math.comb(n, k) / 2**n
        k += 1
    if k == 0:
        return (math.nan, math.nan)
    ordered = sorted(values)
    return (ordered[k - 1], ordered[n - k])


def pairwise_ratios(times: Mapping[str, Sequence[float]], baseline: str) -> dict[str, list[float]]:
    """Each contender's time divided by the baseline's time of the same repetition.

    ``times[name][i]`` is contender ``name``'s time in repetition ``i``; repetitions missing for
    either side are skipped.

    >>> pairwise_ratios({"bare": [1.0, 2.0], "x": [1.5, 2.2]}, "bare")["x"]
    [1.5, 1.1]
    """
    base = times[baseline]
    return {
        name: [round(value / base[i], 12) for i, value in enumerate(values) if i < len(base)]
        for name, values in times.items()
    }


def regret(loss: float, best_loss: float) -> float:
    """``loss / best_loss - 1``: 0 at the best LR, 0.1 for a loss 10% above it.

    Negative when ``loss`` beats the grid's best (a suggestion between two grid points).

    >>> round(regret(1.1, 1.0), 12)
    0.1
    """
    if best_loss <= 0:
        raise ValueError(f"best_loss must be > 0 to form a ratio, got {best_loss!r}")
    return loss / best_loss - 1.0


def geometric_mean(values: Sequence[float]) -> float:
    """The geometric mean of positive ``values`` (NaN when empty).

    >>> geometric_mean([1.0, 4.0])
    2.0
    """
    if not values:
        return math.nan
    if any(value <= 0 for value in values):
        raise ValueError(f"geometric_mean needs positive values, got {list(values)!r}")
    return math.exp(sum(math.log(value) for value in values) / len(values))
