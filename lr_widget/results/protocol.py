"""The protocol single and repeated range tests share: :class:`SweepResult`.

A single sweep (:class:`~lr_widget.results.range_test.RangeTestResult`) and a repeated one
(:class:`~lr_widget.results.repeated.RepeatedRangeTest`) are both a :class:`SweepResult`: its runs,
its noise band (of zero width for a single run), re-smoothing, suggestions and their spread, how it
ended, a CSV and a plot. The widget, comparisons, the command line and plots handle both through
it, never by asking which kind they hold.
"""

from __future__ import annotations

import copy
import csv
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from typing_extensions import Self

from lr_widget.plotting.static import plot_result
from lr_widget.results.jsonfile import JsonDocument
from lr_widget.results.settings import SweepSettings, parse_settings
from lr_widget.results.spread import Bump, NoiseBand, SuggestionSpread
from lr_widget.suggestions.registry import SuggestionSource

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from lr_widget.results.confirmation import Confirmation
    from lr_widget.results.range_test import RangeTestResult

FloatArray = NDArray[np.float64]


class SweepResult(SuggestionSource, JsonDocument, ABC):
    """What a single range test and a repeated one share (the protocol every consumer uses).

    A single sweep is a repeated one with one run: :attr:`runs` is ``[self]``, its
    :meth:`band` has zero width, its :meth:`spreads` and :meth:`real_bumps` are empty. Every
    method returns new objects; none changes the result (re-smoothing included).
    """

    confirmation: Confirmation | None
    """What confirmation probes around the suggested LR found (``find_lr(..., confirm=True)``,
    ``lr-widget --confirm``), or ``None``; saved with the result."""

    if TYPE_CHECKING:  # fields or properties of the two kinds (a base property would hide a field)

        @property
        def runs(self) -> list[RangeTestResult]:
            """The single sweeps it is made of, in order."""

        @property
        def lrs(self) -> Sequence[float] | FloatArray:
            """The LR grid shared by the runs (the longest run's LRs)."""

        @property
        def beta(self) -> float:
            """The smoothing the curves and suggestions use."""

        @property
        def settings(self) -> dict[str, Any]:
            """The sweep's settings as saved (a repeated result's: its first run's)."""

        @property
        def metadata(self) -> dict[str, Any]:
            """Facts about the run: model, optimizer, device, versions."""

        @property
        def error(self) -> str | None:
            """``"ExceptionType: message"`` when a run ended in an error."""

        @property
        def raw_curve(self) -> FloatArray:
            """The raw losses the rules start from (a repeated result's: the per-step median)."""

        @property
        def lag_free_curve(self) -> FloatArray:
            """The zero-phase fit of :attr:`raw_curve` that every rule reads (a repeated
            result's: the per-step median of its runs' fits, the centre of :meth:`band`)."""

    @abstractmethod
    def with_beta(self, beta: float) -> Self:
        """A copy re-smoothed with ``beta`` (no new sweep; this result is unchanged)."""

    @abstractmethod
    def with_train_steps(self, train_steps: int | None) -> Self:
        """A copy whose suggestions are for ``train_steps`` of training (``None``: not known);
        no new sweep, this result is unchanged."""

    def copy(self) -> Self:
        """A copy sharing nothing mutable with this result."""
        return copy.deepcopy(self)

    @abstractmethod
    def band(self) -> NoiseBand:
        """The noise band of the curves the rules read, the runs' lag-free fits (zero width for
        a single run): what a plot draws in bold, and what :meth:`real_bumps` judges."""

    def spreads(self, train_steps: int | None = None) -> dict[str, SuggestionSpread]:
        """Each rule's picks across the runs, by rule (the default's for ``train_steps``, else
        the length given to the sweep); empty for a single run."""
        return {}

    def real_bumps(self) -> list[Bump]:
        """The rises of the median fit larger than the noise; none for a single run."""
        return []

    @abstractmethod
    def shown_curve(self) -> tuple[FloatArray, FloatArray]:
        """``(lrs, smoothed loss)``: the moving-average curve of the live view (a single run's
        smoothed loss, a repeated result's median of them). The rules do not read it: they
        read :attr:`lag_free_curve`, which a finished plot draws in bold over it."""

    @property
    def is_repeated(self) -> bool:
        """Whether it holds runs of a repeated sweep (drawn as a band and its median) rather
        than being a single run (drawn as its curves)."""
        return False

    @property
    def planned_runs(self) -> int:
        """How many runs were planned (more than ``len(runs)`` after a stop)."""
        return len(self.runs)

    @property
    def has_data(self) -> bool:
        """Whether there is anything to draw: a recorded step, or a finished run."""
        return any(run.num_steps for run in self.runs)

    @property
    def total_steps(self) -> int:
        """Steps recorded over all runs."""
        return sum(run.num_steps for run in self.runs)

    @property
    @abstractmethod
    def outcome(self) -> str:
        """One word or two on how it ended: a :class:`StopReason` value, or ``"ended"`` for
        repeated runs that stopped short of the plan without a stop request."""

    @abstractmethod
    def describe_end(self) -> str:
        """How it ended, in one line (``"diverged: smoothed loss ... at step 41"``)."""

    @abstractmethod
    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write one row per step as CSV; return the path."""

    def sweep_settings(self) -> SweepSettings:
        """The settings it was made with (those it does not record take their defaults); a
        saved file's are checked when it is loaded."""
        return parse_settings(self.settings, ignore_unknown=True)

    def plot(
        self, ax: Axes | None = None, *, title: str | None = None, all_rules: bool = False
    ) -> Axes:
        """Draw the result with matplotlib (``pip install matplotlib``): the raw and smoothed
        loss (a repeated result's band and median) and the lag-free fit the rules read, the
        default suggestion marked and labelled "suggested ..." (every rule's with
        ``all_rules=True``), on a log LR axis with the widget's colours and y range, the legend
        outside the plot. Returns the axes.

        ``ax`` defaults to a new figure's axes.
        """
        return plot_result(self, ax, title=title, all_rules=all_rules)


def write_csv(path: str | os.PathLike[str], columns: Mapping[str, Sequence[float]]) -> Path:
    """One row per step: the step number, then each column's value (``repr`` of the float, so
    it reads back exactly); columns may be shorter than the first (empty cells)."""
    target = Path(path)
    steps = len(next(iter(columns.values()), []))
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", *columns])
        for step in range(steps):
            cells = [repr(float(values[step])) if step < len(values) else "" for values in
                     columns.values()]  # fmt: skip
            writer.writerow([step, *cells])
    return target
