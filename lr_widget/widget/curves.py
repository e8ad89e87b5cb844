"""The series one drawing of a single run needs, snapshotted from a result that may still grow."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numpy.typing import NDArray

from lr_widget.curves.smoothing import DebiasedEMA, debiased_ema
from lr_widget.results.range_test import RangeTestResult

FloatArray = NDArray[np.float64]


def fit_where_defined(fitted: FloatArray, smoothed: FloatArray) -> FloatArray:
    """The lag-free fit where it is defined, else the smoothed curve (past the blow-up the fit
    is NaN): the main curve once a run has ended."""
    return np.where(np.isfinite(fitted), fitted, smoothed)


@dataclass(frozen=True)
class Curves:
    """Raw and smoothed losses (and validation losses) of one run, smoothed with one ``beta``,
    and, once the run has ended, the lag-free fit the suggestion rules read."""

    lrs: FloatArray
    losses: FloatArray
    smoothed: FloatArray
    val_losses: FloatArray | None = None
    smoothed_val: FloatArray | None = None
    fitted: FloatArray | None = None

    @classmethod
    def of(cls, result: RangeTestResult, beta: float, *, fitted: bool = False) -> Curves:
        """Snapshot ``result`` smoothed with ``beta``; ``fitted`` adds its lag-free fit
        (:attr:`~lr_widget.results.range_test.RangeTestResult.lag_free_curve`: for a run that has
        ended).

        Safe to call from another thread while the engine appends: it reads the common prefix.
        """
        count = min(len(result.lrs), len(result.losses))
        if result.val_losses is not None:
            count = min(count, len(result.val_losses))
        losses = np.array(result.losses[:count], dtype=np.float64)
        val = None
        if result.val_losses is not None:
            val = np.array(result.val_losses[:count], dtype=np.float64)
        return cls(
            lrs=np.array(result.lrs[:count], dtype=np.float64),
            losses=losses,
            smoothed=debiased_ema(losses, beta),
            val_losses=val,
            smoothed_val=None if val is None else debiased_ema(val, beta),
            fitted=result.lag_free_curve[:count] if fitted else None,
        )

    def with_fit(self, run: RangeTestResult) -> Curves:
        """These curves with the lag-free fit of ``run``, the run they were drawn from, once it
        has ended."""
        return replace(self, fitted=run.lag_free_curve[: self.lrs.size])

    @classmethod
    def empty(cls) -> Curves:
        """Nothing to draw (a sweep is starting)."""
        nothing = np.zeros(0)
        return cls(nothing, nothing, nothing)

    @property
    def ema(self) -> FloatArray:
        """The live view's smoothed series (validation loss if measured)."""
        return self.smoothed if self.smoothed_val is None else self.smoothed_val

    @property
    def curve(self) -> FloatArray:
        """The main series, the one hover points sit on: the lag-free fit where it is defined
        (it ends at the blow-up), else the live view's smoothed series."""
        return self.ema if self.fitted is None else fit_where_defined(self.fitted, self.ema)

    @property
    def raw(self) -> FloatArray:
        """The raw series behind :attr:`curve`."""
        return self.losses if self.val_losses is None else self.val_losses


class LiveCurves:
    """The curves of a run that grows, smoothed incrementally: each :meth:`update` smooths only
    the steps recorded since the last one, so a redraw of a 10,000-step sweep costs what its new
    steps cost (a new run or another ``beta`` starts over).

    >>> run = RangeTestResult(lrs=[1e-3, 1e-2], losses=[1.0, 3.0])
    >>> live = LiveCurves()
    >>> live.update(run, 0.5).smoothed.tolist()
    [1.0, 2.3333333333333335]
    >>> run.lrs.append(1e-1); run.losses.append(5.0)
    >>> live.update(run, 0.5).smoothed.tolist() == debiased_ema(run.losses, 0.5).tolist()
    True
    """

    def __init__(self) -> None:
        self._run: RangeTestResult | None = None
        self._beta = -1.0
        self._smoothed: list[float] = []
        self._smoothed_val: list[float] = []
        self._ema = self._val_ema = DebiasedEMA(0.0)

    def update(self, run: RangeTestResult, beta: float) -> Curves:
        """The curves of ``run`` so far, smoothed with ``beta``."""
        if run is not self._run or beta != self._beta:
            self._run, self._beta = run, beta
            self._smoothed, self._smoothed_val = [], []
            self._ema, self._val_ema = DebiasedEMA(beta), DebiasedEMA(beta)
        count = min(len(run.lrs), len(run.losses))
        if run.val_losses is not None:
            count = min(count, len(run.val_losses))
        update = self._ema.update
        self._smoothed.extend(update(loss) for loss in run.losses[len(self._smoothed) : count])
        val = None
        if run.val_losses is not None:
            val = np.array(run.val_losses[:count], dtype=np.float64)
            update_val = self._val_ema.update
            recent = run.val_losses[len(self._smoothed_val) : count]
            self._smoothed_val.extend(update_val(loss) for loss in recent)
        return Curves(
            lrs=np.array(run.lrs[:count], dtype=np.float64),
            losses=np.array(run.losses[:count], dtype=np.float64),
            smoothed=np.array(self._smoothed[:count], dtype=np.float64),
            val_losses=val,
            smoothed_val=None if val is None else np.array(self._smoothed_val[:count]),
        )
