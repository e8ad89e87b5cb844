"""Smoothing of noisy loss curves.

The range test records one raw loss per step; the curve users read is a debiased exponential
moving average, as in fastai and Lightning: ``a_t = beta * a_{t-1} + (1 - beta) * l_t`` and
``s_t = a_t / (1 - beta ** t)``. The raw losses are always kept, so a curve can be re-smoothed with
another ``beta`` without a new sweep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lr_widget.curves.arguments import require_fraction, require_int, require_real


class DebiasedEMA:
    """Incremental debiased EMA: feed one loss at a time, read the smoothed value.

    Non-finite losses are passed through as NaN/inf and do not poison later values: the engine
    stops at the first one anyway, and ``debiased_ema`` must agree with it point for point.

    Examples
    --------
    >>> ema = DebiasedEMA(beta=0.5)
    >>> ema.update(2.0)
    2.0
    >>> ema.update(4.0)
    3.3333333333333335
    """

    def __init__(self, beta: float = 0.98) -> None:
        self.beta = require_fraction("beta", beta)
        self._average = 0.0
        self._count = 0

    def update(self, loss: float) -> float:
        """Add ``loss`` and return the debiased average so far."""
        if not math.isfinite(loss):
            return float(loss)
        self._count += 1
        self._average = self.beta * self._average + (1.0 - self.beta) * loss
        return self._average / (1.0 - self.beta**self._count)


def debiased_ema(losses: Sequence[float] | np.ndarray, beta: float = 0.98) -> np.ndarray:
    """Smooth ``losses`` with a debiased EMA; returns a float64 array of the same length.

    ``beta=0`` returns the losses unchanged.
    """
    ema = DebiasedEMA(beta)
    return np.array([ema.update(float(loss)) for loss in losses], dtype=np.float64)


# -- the lag-free curve the rules read ----------------------------------------------------------
LAG_FREE_WIDTH = 1.5
"""Full width, in decades of LR, of the lag-free smoother's tricube window."""
LAG_FREE_ITERATIONS = 2
"""Robust reweighting passes after the first fit (LOWESS uses 2-3)."""
_MIN_NEIGHBOURS = 3
_BISQUARE_SCALE = 6.0  # Cleveland's LOWESS: residuals beyond 6 median absolute residuals weigh 0
_CHUNK = 64
_BLOW_UP_RUN = 3
_BLOW_UP_SPREADS = 3.0


def blow_up_cut(losses: Sequence[float] | np.ndarray) -> int:
    """Where the blow-up at the end of a sweep begins: how many points to keep.

    The curve is cut at its first non-finite loss, and at the first point after its lowest
    point from which the loss stays, three points in a row, above where the sweep started (the
    median of the first tenth of the points, at least three, plus three times their robust
    spread, so that batch noise on a flat curve is not a blow-up): past that the model is worse than
    untrained, which says nothing about good learning rates and pulls any smoother upwards. One
    bad batch is a spike, not the blow-up. A curve that never climbs back, or never fell below
    its start, keeps every finite point.

    Examples
    --------
    >>> blow_up_cut([3.0, 3.0, 3.0, 2.0, 1.0, 2.5, 3.5, 9.0])
    6
    >>> blow_up_cut([3.0, 2.0, float("nan"), 1.0])
    2
    """
    values = np.asarray(losses, dtype=np.float64)
    finite = np.isfinite(values)
    stop = values.size if finite.all() else int(np.argmin(finite))
    if stop == 0:
        return 0
    head = values[: max(3, stop // 10)][:stop]
    # Above the start by more than its batch noise: on a flat, noisy curve (a trained model)
    # three points in a row above the median come by chance every few steps.
    spread = 1.4826 * float(np.median(np.abs(head - np.median(head))))
    start_level = float(np.median(head)) + _BLOW_UP_SPREADS * spread
    lowest = int(np.argmin(values[:stop]))
    if lowest < head.size:  # never fell below its start: no blow-up after a minimum to cut
        return stop
    above = values[lowest:stop] > start_level
    # Three points in a row (or all that remain): one bad batch is a spike, not the blow-up.
    padded = np.concatenate([above, np.ones(_BLOW_UP_RUN - 1, dtype=bool)])
    run = np.ones(above.size, dtype=bool)
    for shift in range(_BLOW_UP_RUN):
        run &= padded[shift : shift + above.size]
    starts = np.flatnonzero(run)
    return stop if starts.size == 0 else lowest + int(starts[0])


def lag_free(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    width: float = LAG_FREE_WIDTH,
    iterations: int = LAG_FREE_ITERATIONS,
) -> np.ndarray:
    """A zero-phase smoothing of raw losses in log LR: robust local linear regression (LOWESS).

    Unlike the debiased EMA, which averages only past steps and so lags the raw loss by tens of
    steps (about a decade of LR on a 100-step sweep), this fit weighs neighbours on both sides
    alike, so a minimum stays where the raw loss has it. Each point's value is a weighted linear
    fit of the losses within ``width / 2`` decades of it (a tricube kernel in ``log10(lr)``,
    widened to at least three neighbours where points are sparse); then ``iterations`` passes of
    bisquare reweighting on the residuals make a single outlier, or a spike from one bad batch,
    pull nothing. The blow-up tail is cut first (:func:`blow_up_cut`) and is NaN in the output,
    as are points after a non-finite loss, so indices still match the inputs.

    Parameters
    ----------
    lrs : array_like
        The LR of each step: positive and increasing.
    losses : array_like
        The raw loss of each step.
    width : float
        Full width of the kernel window, in decades of LR (> 0).
    iterations : int
        Robust reweighting passes (0 for a plain local linear fit).

    Returns
    -------
    numpy.ndarray
        Float64, the same length as ``losses``.

    Examples
    --------
    >>> import numpy as np
    >>> lrs = np.logspace(-4, 0, 41)
    >>> curve = lag_free(lrs, (np.log10(lrs) + 2) ** 2)
    >>> float(lrs[np.nanargmin(curve)])
    0.01
    """
    log_lrs, values = _lag_free_inputs(lrs, losses, width, iterations)
    out = np.full(values.size, np.nan)
    keep = blow_up_cut(values)
    if keep == 0:
        return out
    x, y = log_lrs[:keep], values[:keep]
    robustness = np.ones(keep)
    fit = _local_linear(x, y, width / 2, robustness)
    for _ in range(iterations):
        residuals = y - fit
        scale = float(np.median(np.abs(residuals)))
        if scale <= 0:
            break
        u = residuals / (_BISQUARE_SCALE * scale)
        robustness = np.where(np.abs(u) < 1, (1 - u**2) ** 2, 0.0)
        fit = _local_linear(x, y, width / 2, robustness)
    out[:keep] = fit
    return out


def fit_noise(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    fit: Sequence[float] | np.ndarray,
    width: float = LAG_FREE_WIDTH,
) -> float:
    """The standard error of the lag-free ``fit`` at a point: how far batch noise alone moves it.

    The batch-to-batch noise is the robust spread (1.4826 median absolute deviations) of the raw
    ``losses`` about the ``fit`` where the fit is defined; a tricube-weighted average of the
    points within ``width / 2`` decades divides it by ``sum(w) / sqrt(sum(w ** 2))``, computed
    at the middle of the fitted range with the sweep's own spacing. Differences between two
    points of the fit smaller than a few of these are noise, not shape. NaN when fewer than
    three points are fitted.

    Examples
    --------
    >>> import numpy as np
    >>> lrs = np.logspace(-6, 0, 101)
    >>> noise = np.random.default_rng(0).normal(0.0, 0.1, lrs.size)
    >>> fit = np.full(lrs.size, 1.0)
    >>> 0.02 < fit_noise(lrs, 1.0 + noise, fit) < 0.05  # 0.1 over about 4 to 5 points' worth
    True
    """
    log_lrs, values = _lag_free_inputs(lrs, losses, width, 0)
    fitted = np.asarray(fit, dtype=np.float64)
    defined = np.isfinite(fitted) & np.isfinite(values)
    if fitted.shape != values.shape or int(defined.sum()) < 3:
        return math.nan
    residuals = values[defined] - fitted[defined]
    sigma = 1.4826 * float(np.median(np.abs(residuals - np.median(residuals))))
    x = log_lrs[defined]
    middle = x[x.size // 2]
    ratio = np.minimum(np.abs(x - middle) / (width / 2), 1.0)
    weights = (1 - ratio**3) ** 3
    return sigma * float(np.sqrt(np.sum(weights**2))) / float(np.sum(weights))


def _lag_free_inputs(
    lrs: Sequence[float] | np.ndarray,
    losses: Sequence[float] | np.ndarray,
    width: float,
    iterations: int,
) -> tuple[np.ndarray, np.ndarray]:
    width = require_real("width", width)
    if not width > 0 or not math.isfinite(width):
        raise ValueError(f"width must be a positive number of decades, got {width!r}")
    require_int("iterations", iterations, minimum=0)
    lr_values = np.asarray(lrs, dtype=np.float64)
    values = np.asarray(losses, dtype=np.float64)
    if lr_values.ndim != 1 or lr_values.shape != values.shape:
        raise ValueError(
            f"lrs and losses must be 1-D and of one length, got shapes {lr_values.shape} and "
            f"{values.shape}"
        )
    if lr_values.size and not (np.all(np.isfinite(lr_values)) and np.all(lr_values > 0)):
        raise ValueError("lrs must be positive and finite")
    log_lrs = np.log10(lr_values) if lr_values.size else lr_values
    if np.any(np.diff(log_lrs) < 0):
        raise ValueError("lrs must be increasing")
    return log_lrs, values


def _local_linear(
    x: np.ndarray, y: np.ndarray, radius: float, robustness: np.ndarray
) -> np.ndarray:
    """The value at each ``x[i]`` of a tricube-weighted linear fit.

    As in LOWESS's ``delta``, the fit is computed exactly at points at least ``radius / 25``
    apart in log LR and interpolated linearly in between: on a long sweep this saves nearly all
    the work and changes nothing visible, since the fit is smooth on that scale anyway.
    """
    anchors = _anchor_indices(x, radius / 25)
    values = np.empty(anchors.size)
    for first in range(0, anchors.size, _CHUNK):
        rows = anchors[first : first + _CHUNK]
        lo = max(0, min(int(np.searchsorted(x, x[rows[0]] - radius)), rows[0] - _MIN_NEIGHBOURS))
        hi = int(np.searchsorted(x, x[rows[-1]] + radius, "right"))
        hi = min(x.size, max(hi, rows[-1] + _MIN_NEIGHBOURS + 1))
        offsets = x[None, lo:hi] - x[rows, None]
        reach = np.maximum(radius, _neighbour_reach(x, rows, _MIN_NEIGHBOURS))[:, None]
        ratio = np.minimum(np.abs(offsets) / reach, 1.0)
        closeness = 1 - ratio * ratio * ratio
        weights = closeness * closeness * closeness * robustness[None, lo:hi]
        values[first : first + rows.size] = _weighted_line_at_zero(
            offsets, y[None, lo:hi], weights, y[rows]
        )
    if anchors.size == x.size:
        return values
    return np.asarray(np.interp(x, x[anchors], values), dtype=np.float64)


def _anchor_indices(x: np.ndarray, spacing: float) -> np.ndarray:
    """Indices of points at least ``spacing`` apart (greedy from the left), always the last."""
    chosen = [0]
    for index in range(1, x.size):
        if x[index] - x[chosen[-1]] >= spacing:
            chosen.append(index)
    if chosen[-1] != x.size - 1:
        chosen.append(x.size - 1)
    return np.asarray(chosen, dtype=np.int64)


def _neighbour_reach(x: np.ndarray, rows: np.ndarray, count: int) -> np.ndarray:
    """Per row, slightly more than the distance to its ``count``-th nearest neighbour on the
    farther-reaching side, so that a sparse curve still has points to fit."""
    left = x[rows] - x[np.maximum(rows - count, 0)]
    right = x[np.minimum(rows + count, x.size - 1)] - x[rows]
    return np.asarray(1.0001 * np.maximum(left, right), dtype=np.float64)


def _weighted_line_at_zero(
    offsets: np.ndarray, y: np.ndarray, weights: np.ndarray, fallback: np.ndarray
) -> np.ndarray:
    """Intercept at offset 0 of each row's weighted least-squares line (the weighted mean when
    the row's points cannot fix a slope; the point itself when every weight is 0)."""
    total = weights.sum(axis=1)
    safe = np.where(total > 0, total, 1.0)
    mean_x = (weights * offsets).sum(axis=1) / safe
    mean_y = (weights * y).sum(axis=1) / safe
    spread = (weights * (offsets - mean_x[:, None]) ** 2).sum(axis=1)
    covariance = (weights * (offsets - mean_x[:, None]) * (y - mean_y[:, None])).sum(axis=1)
    scale = np.maximum(np.abs(offsets).max(axis=1), 1e-300) ** 2 * np.maximum(total, 1e-300)
    slope = np.where(spread > 1e-12 * scale, covariance / np.where(spread > 0, spread, 1.0), 0.0)
    return np.where(total > 0, mean_y - slope * mean_x, fallback)
