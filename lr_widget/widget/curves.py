"""The series one drawing of a single run needs, snapshotted from a result that may still grow."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from lr_widget.result import RangeTestResult
from lr_widget.smoothing import debiased_ema

__all__ = ["Curves"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Curves:
    """Raw and smoothed losses (and validation losses) of one run, smoothed with one ``beta``."""

    lrs: FloatArray
    losses: FloatArray
    smoothed: FloatArray
    val_losses: FloatArray | None = None
    smoothed_val: FloatArray | None = None

    @classmethod
    def of(cls, result: RangeTestResult, beta: float) -> Curves:
        """Snapshot ``result`` smoothed with ``beta``.

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
        )

    @classmethod
    def empty(cls) -> Curves:
        """Nothing to draw (a sweep is starting)."""
        nothing = np.zeros(0)
        return cls(nothing, nothing, nothing)

    @property
    def curve(self) -> FloatArray:
        """The series the suggestions read (smoothed validation loss if measured)."""
        return self.smoothed if self.smoothed_val is None else self.smoothed_val

    @property
    def raw(self) -> FloatArray:
        """The raw series behind :attr:`curve`."""
        return self.losses if self.val_losses is None else self.val_losses
