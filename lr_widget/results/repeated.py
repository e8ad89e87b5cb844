"""The result of repeated range tests: the runs, and the noise band they span.

One sweep's curve wiggles with the batch order and the dropout masks, so a bump in it may be real
or noise. :class:`RepeatedRangeTest` holds several runs of one range test on one LR schedule
(made by :class:`~lr_widget.engine.repeated_sweep.RepeatedSweep`) and derives everything else on
demand:

* :meth:`~RepeatedRangeTest.band`: per step, the median, minimum and maximum of the runs' lag-free
  fits (the curves their rules read), over the runs whose fit reaches that step (each fit ends at
  its run's blow-up); :meth:`~RepeatedRangeTest.smoothed_band` is the same of the live view's
  moving averages;
* :meth:`~RepeatedRangeTest.spread`: each rule's per-run picks, their geometric median and range;
* :attr:`~RepeatedRangeTest.suggestion`: a robust default, the geometric median of the runs' picks;
* :meth:`~RepeatedRangeTest.bumps` and :meth:`~RepeatedRangeTest.bump_between`: whether a rise of
  the median fit is larger than the band there (:class:`~lr_widget.results.spread.Bump`).

It is a :class:`~lr_widget.results.protocol.SweepResult`, like a single run, and saves to strict
JSON that composes :meth:`RangeTestResult.to_dict` of every run; loading parses JSON only and never
runs code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from typing_extensions import Self

from lr_widget.curves.axes import nearest_index
from lr_widget.results.confirmation import Confirmation
from lr_widget.results.jsonfile import DocumentError
from lr_widget.results.protocol import SweepResult, write_csv
from lr_widget.results.range_test import (
    RangeTestResult,
    StopReason,
    describe_batch,
    saved_confirmation,
)
from lr_widget.results.settings import SweepSettings
from lr_widget.results.spread import (
    MIN_RUNS_TO_JUDGE,
    Bump,
    NoiseBand,
    SuggestionSpread,
    largest_rise,
    rising_stretches,
)
from lr_widget.suggestions.curve import Suggestion
from lr_widget.suggestions.length import describe_length
from lr_widget.suggestions.registry import CURVE_READ, DEFAULT_RULE, RULES, suggest

REPEATED_FORMAT_NAME = "lr_widget.repeated_range_test"
REPEATED_FORMAT_VERSION = 1

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass
class RepeatedRangeTest(SweepResult):
    """Several range tests of one model on one LR schedule, and their noise band.

    Attributes
    ----------
    runs : list of RangeTestResult
        One per run, in order. Their LRs must agree step for step (one schedule); runs may stop
        at different steps.
    seeds : list of int or None
        The seed of each run (``seed + i``), or ``None`` when unknown.
    repeats : int or None
        How many runs were planned (more than ``len(runs)`` while running or after a stop).

    Examples
    --------
    >>> a = RangeTestResult(lrs=[1e-3, 1e-2, 1e-1], losses=[1.0, 0.8, 2.0], beta=0.0)
    >>> b = RangeTestResult(lrs=[1e-3, 1e-2], losses=[1.2, 0.6], beta=0.0)
    >>> repeated = RepeatedRangeTest([a, b])
    >>> repeated.smoothed_band().high.tolist()  # beta=0: the smoothed curves are the raw losses
    [1.2, 0.8, 2.0]
    >>> repeated.count.tolist()  # runs whose lag-free fit reaches each step
    [2, 2, 1]
    >>> RepeatedRangeTest.from_json(repeated.to_json()).to_dict() == repeated.to_dict()
    True
    """

    format_name: ClassVar[str] = REPEATED_FORMAT_NAME
    format_version: ClassVar[int] = REPEATED_FORMAT_VERSION
    document_kind: ClassVar[str] = "repeated range test"

    runs: list[RangeTestResult] = field(default_factory=list)
    seeds: list[int] | None = None
    repeats: int | None = None
    confirmation: Confirmation | None = None

    def __post_init__(self) -> None:
        self.runs = list(self.runs)
        if self.seeds is not None and len(self.seeds) != len(self.runs):
            raise ValueError(
                f"seeds must have one entry per run, got {len(self.seeds)} for {len(self.runs)} "
                "runs (or pass seeds=None)"
            )
        if self.repeats is not None and self.repeats < len(self.runs):
            raise ValueError(f"repeats={self.repeats!r} is fewer than the {len(self.runs)} runs")
        _check_shared_grid(self.runs)

    # -- curves -----------------------------------------------------------------------------
    @property
    def lrs(self) -> FloatArray:
        """The shared LR grid: the LRs of the longest run."""
        longest = max(self.runs, key=lambda run: run.num_steps, default=None)
        return np.asarray([] if longest is None else longest.lrs, dtype=np.float64)

    def band(self) -> NoiseBand:
        """The noise band of the curves the rules read: per step, the median, lowest and highest
        of the runs' lag-free fits (:attr:`RangeTestResult.lag_free_curve`), over the runs whose
        fit reaches the step (each ends at its run's blow-up). Where fewer than half the runs'
        fits reach a step, the band is NaN there: the median of the last survivors is no median
        of the runs (``count`` still says how many reach it). One call gives consistent arrays.
        Its median is :attr:`lag_free_curve`, the bold curve of the plots; its rises are judged
        by :meth:`bumps`."""
        band = NoiseBand.from_curves(self.lrs, [run.lag_free_curve for run in self.runs])
        few = band.count < (len(self.runs) + 1) // 2
        if not few.any():
            return band
        median, low, high = (np.where(few, np.nan, v) for v in (band.median, band.low, band.high))
        return replace(band, median=median, low=low, high=high)

    def smoothed_band(self) -> NoiseBand:
        """The same band of the runs' moving averages (:attr:`RangeTestResult.curve`): the live
        view's curves, which lag the raw loss; the rules do not read them."""
        return NoiseBand.from_curves(self.lrs, [run.curve for run in self.runs])

    def shown_curve(self) -> tuple[FloatArray, FloatArray]:
        """``(lrs, median of the runs' moving averages)``: the live view's curve (the rules
        read :attr:`lag_free_curve`, which a finished plot draws in bold)."""
        band = self.smoothed_band()
        return band.lrs, band.median

    @property
    def median(self) -> FloatArray:
        """Per-step median of the runs' lag-free fits (:meth:`band`)."""
        return self.band().median

    @property
    def low(self) -> FloatArray:
        """Per-step minimum of the runs' lag-free fits (the band's lower edge)."""
        return self.band().low

    @property
    def high(self) -> FloatArray:
        """Per-step maximum of the runs' lag-free fits (the band's upper edge)."""
        return self.band().high

    @property
    def count(self) -> IntArray:
        """Runs whose fit reaches each step."""
        return self.band().count

    @property
    def raw_curve(self) -> FloatArray:
        """Per-step median of the runs' raw curves (:attr:`RangeTestResult.raw_curve`), over the
        runs that reached the step."""
        return NoiseBand.from_curves(self.lrs, [run.raw_curve for run in self.runs]).median

    @property
    def lag_free_curve(self) -> FloatArray:
        """The per-step median of the runs' lag-free fits, the centre of :meth:`band`: the bold
        curve of the plots, where the robust picks are marked, and the curve
        :meth:`median_curve_suggestion` reads (each run's rules read the run's own fit)."""
        if not self.runs:
            return np.empty(0)
        return self.band().median

    @property
    def band_width(self) -> FloatArray:
        """``high - low`` per step."""
        return self.band().width

    def with_beta(self, beta: float) -> Self:
        """A copy with every run re-smoothed with ``beta`` (no new sweeps; this one is
        unchanged): the moving averages change, the fits and their band do not."""
        return replace(self.copy(), runs=[run.with_beta(beta) for run in self.runs])

    def with_train_steps(self, train_steps: int | None) -> Self:
        """A copy whose runs' suggestions are for ``train_steps`` of training (no new sweeps)."""
        runs = [run.with_train_steps(train_steps) for run in self.runs]
        return replace(self.copy(), runs=runs)

    # -- the protocol -----------------------------------------------------------------------
    @property
    def beta(self) -> float:
        """The runs' smoothing (the default ``beta`` without runs)."""
        return self.runs[0].beta if self.runs else SweepSettings().beta

    @property
    def settings(self) -> dict[str, Any]:
        """The first run's sweep settings (every run shares them)."""
        return self.runs[0].settings if self.runs else {}

    @property
    def metadata(self) -> dict[str, Any]:
        """The first run's metadata (model, optimizer, device, versions)."""
        return self.runs[0].metadata if self.runs else {}

    @property
    def error(self) -> str | None:
        """The first error a run ended in, if any."""
        return next((run.error for run in self.runs if run.error is not None), None)

    @property
    def is_repeated(self) -> bool:
        """``True``: a band of runs, even of one run."""
        return True

    @property
    def planned_runs(self) -> int:
        """``repeats``, or the number of runs when unknown."""
        return len(self.runs) if self.repeats is None else self.repeats

    @property
    def outcome(self) -> str:
        """``"stopped"`` if a run was stopped, ``"completed"`` when every planned run ran, else
        ``"ended"``."""
        if any(run.stop_reason is StopReason.STOPPED for run in self.runs):
            return "stopped"
        return "completed" if len(self.runs) == self.planned_runs else "ended"

    def describe_end(self) -> str:
        """``"completed: 5 of 5 runs (4 completed, 1 diverged)"``."""
        ends: dict[str, int] = {}
        for run in self.runs:
            ends[str(run.stop_reason)] = ends.get(str(run.stop_reason), 0) + 1
        how = ", ".join(f"{count} {reason}" for reason, count in ends.items())
        runs = f"{self.outcome}: {len(self.runs)} of {self.planned_runs} runs"
        return runs + (f" ({how})" if how else "")

    def real_bumps(self) -> list[Bump]:
        """The rises of the median fit that are larger than the noise
        (:attr:`Bump.significant`); none when the band is degenerate."""
        if not self.runs:
            return []
        try:
            return [bump for bump in self.bumps() if bump.significant]
        except ValueError:  # a degenerate band (e.g. hand-made runs): nothing to judge
            return []

    # -- suggestions ------------------------------------------------------------------------
    def spread(self, rule: str = DEFAULT_RULE, train_steps: int | None = None) -> SuggestionSpread:
        """``rule``'s pick in every run (for ``train_steps``, else the runs' own length)."""
        if rule not in RULES:
            raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
        picks = tuple(run.suggest(rule, train_steps) for run in self.runs)
        return SuggestionSpread(rule, picks)

    def spreads(self, train_steps: int | None = None) -> dict[str, SuggestionSpread]:
        """Every rule's spread, by rule name (empty without runs)."""
        if not self.runs:
            return {}
        return {rule: self.spread(rule, train_steps) for rule in RULES}

    def suggest(self, rule: str = DEFAULT_RULE, train_steps: int | None = None) -> Suggestion:
        """The robust pick of ``rule``: the geometric median of the runs' picks, marked at the
        grid LR nearest to it on :attr:`lag_free_curve`, the bold curve of the plots (on the
        median moving average past the end of every fit).

        Why the median of the picks rather than the rule applied to the median curve: each pick
        is the rule reading the kind of curve it was designed for (one real sweep); the median of
        ``k`` picks ignores up to ``(k - 1) // 2`` wild ones (the valley rule jumps a decade when
        one uptick breaks its decreasing run); and it is the centre of the very spread shown
        next to it. The median curve's tail, where runs have begun to diverge, is made of the
        survivors only, which biases rules that read slopes near the end.
        :meth:`median_curve_suggestion` gives that other answer for comparison.
        ``train_steps`` (``None``: the length given to the sweep) is the default rule's.
        """
        spread = self.spread(rule, train_steps)
        lr = spread.median_lr
        flat = sum(run.flat is not None for run in self.runs)
        flat_note = f"flat curve in {flat} of {len(self.runs)} runs; " if flat else ""
        if lr is None:
            first = spread.suggestions[0].reason if spread.suggestions else "no runs"
            reason = f"no run gave an answer ({len(self.runs)} runs; the first: {first})"
            return Suggestion(rule, None, None, None, reason)
        fit = self.band().median  # the bold curve: the pick is marked on it where it is defined
        index = nearest_index(self.lrs, lr)
        reason = f"{flat_note}median of the runs' picks: {spread.describe()}"
        if index >= fit.size or not np.isfinite(fit[index]):
            fit = self.smoothed_band().median
        return Suggestion(rule, lr, index, float(fit[index]), reason)

    def median_curve_suggestion(
        self, rule: str = DEFAULT_RULE, train_steps: int | None = None
    ) -> Suggestion:
        """``rule`` applied to :attr:`lag_free_curve`, the median of the runs' fits, instead
        (for comparison with :meth:`suggest`)."""
        lrs, steps = self.lrs, self._length(train_steps)
        if not lrs.size:
            return self.suggest(rule, steps)
        return suggest(lrs, self.lag_free_curve, rule, steps)

    # -- is that bump real? -----------------------------------------------------------------
    def bump_between(self, lr_low: float, lr_high: float) -> Bump | None:
        """The largest rise of the median fit between two LRs (either order), judged against
        the band of the fits; ``None`` if the median never rises there."""
        band = self._judged_band()
        low, high = sorted((float(lr_low), float(lr_high)))
        inside = np.flatnonzero((band.lrs >= low) & (band.lrs <= high))
        if inside.size < 2:
            return None
        pair = largest_rise(band.median, int(inside[0]), int(inside[-1]))
        return None if pair is None else self._bump(band, *pair)

    def bumps(self) -> list[Bump]:
        """Every rise of the median fit, left to right, each judged against the band; keep
        ``[b for b in result.bumps() if b.significant]`` for the real ones."""
        band = self._judged_band()
        found = []
        for first, last in rising_stretches(band):
            pair = largest_rise(band.median, first, last)
            if pair is not None:
                found.append(self._bump(band, *pair))
        return found

    def _judged_band(self) -> NoiseBand:
        """:meth:`band` with its median left out where fewer fits than a rise needs to be judged
        remain (:data:`MIN_RUNS_TO_JUDGE`, or every run when there are fewer): past the first
        blow-ups the median is of the survivors only, and a rise to it says nothing."""
        band = self.band()
        needed = min(MIN_RUNS_TO_JUDGE, len(self.runs))
        return replace(band, median=np.where(band.count >= needed, band.median, np.nan))

    def _bump(self, band: NoiseBand, foot: int, peak: int) -> Bump:
        both = np.isfinite(band.curves[:, foot]) & np.isfinite(band.curves[:, peak])
        rising = band.curves[both, peak] > band.curves[both, foot]
        return Bump(
            foot_index=foot,
            peak_index=peak,
            foot_lr=float(band.lrs[foot]),
            peak_lr=float(band.lrs[peak]),
            rise=float(band.median[peak] - band.median[foot]),
            gap=float(band.low[peak] - band.high[foot]),
            runs=int(both.sum()),
            runs_rising=int(rising.sum()),
        )

    # -- serialisation ----------------------------------------------------------------------
    def _to_fields(self) -> dict[str, Any]:
        """Every run's :meth:`RangeTestResult.to_dict`, the seeds and the planned count."""
        return {
            "repeats": self.repeats,
            "seeds": None if self.seeds is None else [int(seed) for seed in self.seeds],
            "runs": [run.to_dict() for run in self.runs],
            "confirmation": None if self.confirmation is None else self.confirmation.to_dict(),
        }

    @classmethod
    def _from_fields(cls, data: Mapping[str, Any]) -> Self:
        runs, seeds, repeats = data.get("runs"), data.get("seeds"), data.get("repeats")
        if not isinstance(runs, list):
            raise DocumentError(f"runs must be a list of results, got {type(runs).__name__}")
        if seeds is not None and not _all_ints(seeds):
            raise DocumentError(f"seeds must be a list of integers or null, got {seeds!r}")
        if repeats is not None and not _all_ints([repeats]):
            raise DocumentError(f"repeats must be an integer or null, got {repeats!r}")
        loaded = [RangeTestResult.from_dict(run) for run in runs]
        confirmation = saved_confirmation(data.get("confirmation"))
        if confirmation is None and loaded and loaded[0].confirmation is not None:
            # Files written before the repeated result had a field of its own kept it in run 0.
            confirmation, loaded[0] = loaded[0].confirmation, replace(loaded[0], confirmation=None)
        return cls(loaded, seeds, repeats, confirmation)

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """One row per step: lr, the band's median, low and high (of the runs' lag-free fits),
        how many fits reach the step, then each run's fit (``run_0``, ``run_1``...; empty past
        its end)."""
        band = self.band()
        columns: dict[str, Sequence[float]] = {
            "lr": band.lrs.tolist(),
            "median": band.median.tolist(),
            "low": band.low.tolist(),
            "high": band.high.tolist(),
            "runs": band.count.tolist(),
        }
        columns.update(
            (f"run_{index}", run.lag_free_curve.tolist()) for index, run in enumerate(self.runs)
        )
        return write_csv(path, columns)

    # -- display ----------------------------------------------------------------------------
    def summary(self) -> str:
        """A few readable lines: the runs, each rule's spread, the robust pick, real bumps."""
        lines = [
            repr(self),
            f"   each run's rules read {CURVE_READ}",
            f"   the default ({DEFAULT_RULE}) is for {describe_length(self.train_steps)}",
        ]
        batch = describe_batch(self.metadata)
        if batch is not None:
            lines.append(f"   {batch}")
        for rule, spread in self.spreads().items():
            lines.append(f" {'*' if rule == DEFAULT_RULE else ' '} {spread.describe()}")
        real = self.real_bumps()
        lines.append(f"   robust pick: {self.suggestion}")
        lines.extend(f"   {bump.describe()}" for bump in real)
        if not real:
            lines.append("   no rise of the median fit is larger than the band around it")
        return "\n".join(lines)

    def __repr__(self) -> str:
        planned = "" if self.repeats in (None, len(self.runs)) else f" of {self.repeats} planned"
        if not self.runs:
            return f"RepeatedRangeTest(0 runs{planned})"
        lrs = self.lrs
        stops: dict[str, int] = {}
        for run in self.runs:
            stops[str(run.stop_reason)] = stops.get(str(run.stop_reason), 0) + 1
        ends = ", ".join(f"{count} {reason}" for reason, count in stops.items())
        return (
            f"RepeatedRangeTest({len(self.runs)} runs{planned}, lr {lrs[0]:.2e} -> "
            f"{lrs[-1]:.2e}, {ends}; {self.spread().describe()})"
        )


def _all_ints(values: Any) -> bool:
    return isinstance(values, list) and all(
        isinstance(value, int) and not isinstance(value, bool) for value in values
    )


def _check_shared_grid(runs: Sequence[RangeTestResult]) -> None:
    """Raise unless every run's LRs are a prefix of the longest run's (one schedule)."""
    if not runs:
        return
    longest = max(runs, key=lambda run: run.num_steps)
    for index, run in enumerate(runs):
        differs = np.flatnonzero(np.asarray(run.lrs) != np.asarray(longest.lrs[: run.num_steps]))
        if differs.size:
            step = int(differs[0])
            raise ValueError(
                f"run {index} has lr {run.lrs[step]!r} at step {step} where another run has "
                f"{longest.lrs[step]!r}: repeated runs must share one LR schedule (use "
                "lr_widget.results.compare.Comparison for different sweeps)"
            )
