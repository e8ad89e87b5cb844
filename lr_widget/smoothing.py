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

from lr_widget.validation import require_fraction

__all__ = ["DebiasedEMA", "debiased_ema"]


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
