"""lr_widget's rules for fastai's own finder: ``learn.lr_find(suggest_funcs=suggest_funcs)``.

fastai hands each suggestion function ``(lrs, losses, num_it)``: the LRs and the recorder's losses
of its sweep, without the first ``num_it // 10`` points and the last 5. Those losses are fastai's
smoothed loss (a debiased moving average, ``beta`` 0.98), which lags the loss by about 50 steps;
lr_widget's rules read a lag-free fit of the raw losses. So each function here first recovers the
raw losses from the smoothed ones (the average is inverted exactly, losing only the first point),
then applies the rule, and returns what fastai expects: the LR and the point to mark on its plot.
A rule that finds no LR (a flat curve) returns ``nan``, which fastai's plot leaves out.

No fastai import is needed: the functions work on the tensors or lists fastai passes.

>>> from fastai.callback.schedule import valley  # doctest: +SKIP
>>> learn.lr_find(suggest_funcs=(valley, *suggest_funcs))  # doctest: +SKIP
SuggestedLRs(valley=..., lr_widget_for_length=..., lr_widget_minimum=..., lr_widget_steep=...)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from lr_widget.results.range_test import RangeTestResult
from lr_widget.suggestions.length import check_train_steps
from lr_widget.suggestions.registry import DEFAULT_RULE, RULES

FASTAI_BETA = 0.98
"""The smoothing of fastai's recorded loss (``Recorder(beta=0.98)``, ``AvgSmoothLoss``)."""

SuggestFunc = Callable[[Any, Any, int], tuple[float, tuple[float, float]]]
"""What ``learn.lr_find(suggest_funcs=...)`` calls: ``(lrs, losses, num_it) -> (lr, (x, y))``."""


def raw_losses(
    smoothed: Sequence[float], first_count: int, beta: float = FASTAI_BETA
) -> np.ndarray:
    """The losses behind fastai's debiased moving average ``smoothed``, whose first value was
    the average of ``first_count`` losses; one shorter (the first one cannot be recovered).

    fastai keeps ``avg_c = beta * avg_(c-1) + (1 - beta) * loss_c`` and records
    ``avg_c / (1 - beta ** c)``; this undoes both.

    >>> losses = [3.0, 2.0, 2.5, 1.0]
    >>> avg, recorded = 0.0, []
    >>> for count, loss in enumerate(losses, start=1):
    ...     avg = 0.98 * avg + 0.02 * loss
    ...     recorded.append(avg / (1 - 0.98**count))
    >>> raw_losses(recorded[1:], first_count=2).round(6).tolist()
    [2.5, 1.0]
    """
    values = np.asarray(smoothed, dtype=np.float64)
    counts = first_count + np.arange(values.size)
    averages = values * (1.0 - beta**counts)
    return (averages[1:] - beta * averages[:-1]) / (1.0 - beta)


def suggest(rule: str = DEFAULT_RULE, *, train_steps: int | None = None) -> SuggestFunc:
    """A fastai suggestion function for lr_widget's rule ``rule`` (one of
    :data:`~lr_widget.suggestions.RULES`), for ``train_steps`` of training (read by the default
    rule; ``None``: the length it assumes). Its name, ``lr_widget_<rule>``, is the field of
    fastai's ``SuggestedLRs`` and the label on its plot.

    >>> suggest("minimum").__name__
    'lr_widget_minimum'
    """
    if rule not in RULES:
        raise ValueError(f"rule must be one of {list(RULES)}, got {rule!r}")
    length = check_train_steps(train_steps)

    def suggestion(lrs: Any, losses: Any, num_it: int) -> tuple[float, tuple[float, float]]:
        recorded_lrs = _floats(lrs)
        smoothed = _floats(losses)
        count = min(len(recorded_lrs), len(smoothed))
        if count < 3:
            return math.nan, (math.nan, math.nan)
        raw = raw_losses(smoothed[:count], first_count=num_it // 10 + 1)
        result = RangeTestResult(lrs=recorded_lrs[1:count], losses=raw.tolist(), beta=FASTAI_BETA)
        lr = result.suggest(rule, train_steps=length).lr
        if lr is None:
            return math.nan, (math.nan, math.nan)
        nearest = int(np.argmin(np.abs(np.log(np.asarray(recorded_lrs[:count])) - math.log(lr))))
        return float(lr), (float(lr), float(smoothed[nearest]))

    suggestion.__name__ = suggestion.__qualname__ = f"lr_widget_{rule}"
    suggestion.__doc__ = f"lr_widget's {rule!r} rule, for fastai's lr_find(suggest_funcs=...)."
    return suggestion


def _floats(values: Any) -> list[float]:
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [float(value) for value in values]


suggest_funcs: tuple[SuggestFunc, ...] = tuple(
    suggest(rule) for rule in dict.fromkeys((DEFAULT_RULE, "minimum", "steep"))
)
"""lr_widget's default rule (for the length it assumes) and its ``minimum`` and ``steep`` rules,
as ``learn.lr_find(suggest_funcs=...)`` takes them; :func:`suggest` makes others."""
