"""Repeated range tests: the same sweep run k times, and the noise band the runs span.

One sweep's curve wiggles with the batch order and the dropout masks, so a bump in it may be real
or noise. :class:`RepeatedSweep` runs the same range test ``repeats`` times from the same starting
state; before run ``i`` it seeds torch, numpy and ``random`` with ``seed + i`` (so a shuffling
DataLoader yields another order and dropout draws other masks), the engine restores the model,
optimizer and RNG streams after every run, and the caller's own RNG streams are restored at the end.

:class:`RepeatedRangeTest` holds the runs and derives everything else on demand:

* :meth:`~RepeatedRangeTest.band`: per step, the median, minimum and maximum of the runs' smoothed
  curves, over the runs that reached that step (runs that diverge early simply stop counting);
* :meth:`~RepeatedRangeTest.spread`: each rule's per-run picks, their geometric median and range;
* :attr:`~RepeatedRangeTest.suggestion`: a robust default, the geometric median of the runs' picks;
* :meth:`~RepeatedRangeTest.bumps` and :meth:`~RepeatedRangeTest.bump_between`: whether a rise of
  the median curve is larger than the noise there (:class:`~lr_widget.spread.Bump`).

The runs differ only as much as their randomness does: give a shuffling DataLoader, or every run
sees the same batch order (a ``UserWarning`` says so) and the band shows dropout noise alone.

It saves to strict JSON that composes :meth:`RangeTestResult.to_dict` of every run; loading parses
JSON only and never runs code.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from typing_extensions import Self

from lr_widget.batches import LossFn
from lr_widget.engine import LRFinder, StepEvent
from lr_widget.jsonfile import JsonDocument
from lr_widget.result import RangeTestResult, StopReason
from lr_widget.spread import Bump, NoiseBand, SuggestionSpread, largest_rise, rising_stretches
from lr_widget.state import MAX_SEED, RNGState, seed_everything
from lr_widget.suggestions import DEFAULT_RULE, RULES, Suggestion, SuggestionSource, suggest
from lr_widget.validation import require_int

__all__ = [
    "REPEATED_FORMAT_NAME",
    "REPEATED_FORMAT_VERSION",
    "RepeatCallback",
    "RepeatStepEvent",
    "RepeatedRangeTest",
    "RepeatedSweep",
    "find_lr_repeated",
]

REPEATED_FORMAT_NAME = "lr_widget.repeated_range_test"
REPEATED_FORMAT_VERSION = 1

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


# -- the result -------------------------------------------------------------------------------
@dataclass
class RepeatedRangeTest(SuggestionSource, JsonDocument):
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
    >>> repeated.high.tolist()
    [1.2, 0.8, 2.0]
    >>> RepeatedRangeTest.from_json(repeated.to_json()).to_dict() == repeated.to_dict()
    True
    """

    runs: list[RangeTestResult] = field(default_factory=list)
    seeds: list[int] | None = None
    repeats: int | None = None

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
        """The noise band of the runs' smoothed curves (one call gives consistent arrays)."""
        return NoiseBand.from_curves(self.lrs, [run.curve for run in self.runs])

    @property
    def median(self) -> FloatArray:
        """Per-step median of the runs' smoothed curves."""
        return self.band().median

    @property
    def low(self) -> FloatArray:
        """Per-step minimum of the runs' smoothed curves (the band's lower edge)."""
        return self.band().low

    @property
    def high(self) -> FloatArray:
        """Per-step maximum of the runs' smoothed curves (the band's upper edge)."""
        return self.band().high

    @property
    def count(self) -> IntArray:
        """Runs contributing at each step."""
        return self.band().count

    @property
    def band_width(self) -> FloatArray:
        """``high - low`` per step."""
        return self.band().width

    def with_beta(self, beta: float) -> RepeatedRangeTest:
        """A copy with every run re-smoothed with ``beta`` (no new sweeps)."""
        return replace(self, runs=[run.with_beta(beta) for run in self.runs])

    # -- suggestions ------------------------------------------------------------------------
    def spread(self, rule: str = DEFAULT_RULE) -> SuggestionSpread:
        """``rule``'s pick in every run."""
        if rule not in RULES:
            raise ValueError(f"rule must be one of {sorted(RULES)}, got {rule!r}")
        return SuggestionSpread(rule, tuple(run.suggest(rule) for run in self.runs))

    def spreads(self) -> dict[str, SuggestionSpread]:
        """Every rule's spread, by rule name."""
        return {rule: self.spread(rule) for rule in RULES}

    def suggest(self, rule: str = DEFAULT_RULE) -> Suggestion:
        """The robust pick of ``rule``: the geometric median of the runs' picks, marked on the
        median curve at the grid LR nearest to it.

        Why the median of the picks rather than the rule applied to the median curve: each pick
        is the rule reading the kind of curve it was designed for (one real sweep); the median of
        ``k`` picks ignores up to ``(k - 1) // 2`` wild ones (the valley rule jumps a decade when
        one uptick breaks its decreasing run); and it is the centre of the very spread shown
        next to it. The median curve's tail, where runs have begun to diverge, is made of the
        survivors only, which biases rules that read slopes near the end.
        :meth:`median_curve_suggestion` gives that other answer for comparison.
        """
        spread = self.spread(rule)
        lr = spread.median_lr
        if lr is None:
            reason = f"no run gave an answer ({len(self.runs)} runs)"
            return Suggestion(rule, None, None, None, reason)
        band = self.band()
        index = int(np.argmin(np.abs(np.log10(band.lrs) - math.log10(lr))))
        reason = f"median of the runs' picks: {spread.describe()}"
        return Suggestion(rule, lr, index, float(band.median[index]), reason)

    def median_curve_suggestion(self, rule: str = DEFAULT_RULE) -> Suggestion:
        """``rule`` applied to the median curve instead (for comparison with :meth:`suggest`)."""
        band = self.band()
        return suggest(band.lrs, band.median, rule) if band.lrs.size else self.suggest(rule)

    # -- is that bump real? -----------------------------------------------------------------
    def bump_between(self, lr_low: float, lr_high: float) -> Bump | None:
        """The largest rise of the median curve between two LRs (either order), judged against
        the band; ``None`` if the median never rises there."""
        band = self.band()
        low, high = sorted((float(lr_low), float(lr_high)))
        inside = np.flatnonzero((band.lrs >= low) & (band.lrs <= high))
        if inside.size < 2:
            return None
        pair = largest_rise(band.median, int(inside[0]), int(inside[-1]))
        return None if pair is None else self._bump(band, *pair)

    def bumps(self) -> list[Bump]:
        """Every rise of the median curve, left to right, each judged against the band; keep
        ``[b for b in result.bumps() if b.significant]`` for the real ones."""
        band = self.band()
        found = []
        for first, last in rising_stretches(band):
            pair = largest_rise(band.median, first, last)
            if pair is not None:
                found.append(self._bump(band, *pair))
        return found

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
    def to_dict(self) -> dict[str, Any]:
        """A strict-JSON-safe dictionary: every run's :meth:`RangeTestResult.to_dict`, seeds."""
        return {
            "format": REPEATED_FORMAT_NAME,
            "version": REPEATED_FORMAT_VERSION,
            "repeats": self.repeats,
            "seeds": None if self.seeds is None else [int(seed) for seed in self.seeds],
            "runs": [run.to_dict() for run in self.runs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict`'s output, checking its shape."""
        if not isinstance(data, Mapping) or data.get("format") != REPEATED_FORMAT_NAME:
            raise ValueError(
                f"not an lr_widget repeated range test (expected format {REPEATED_FORMAT_NAME!r})"
            )
        version = data.get("version")
        if not isinstance(version, int) or version > REPEATED_FORMAT_VERSION:
            raise ValueError(
                f"unsupported repeated-result version {version!r}; this lr_widget reads versions "
                f"up to {REPEATED_FORMAT_VERSION}"
            )
        runs, seeds, repeats = data.get("runs"), data.get("seeds"), data.get("repeats")
        if not isinstance(runs, list):
            raise ValueError(f"runs must be a list of results, got {type(runs).__name__}")
        if seeds is not None and not _all_ints(seeds):
            raise ValueError(f"seeds must be a list of integers or null, got {seeds!r}")
        if repeats is not None and not _all_ints([repeats]):
            raise ValueError(f"repeats must be an integer or null, got {repeats!r}")
        return cls([RangeTestResult.from_dict(run) for run in runs], seeds, repeats)

    # -- display ----------------------------------------------------------------------------
    def summary(self) -> str:
        """A few readable lines: the runs, each rule's spread, the robust pick, real bumps."""
        lines = [repr(self)]
        for rule, spread in self.spreads().items():
            lines.append(f" {'*' if rule == DEFAULT_RULE else ' '} {spread.describe()}")
        real = [bump for bump in self.bumps() if bump.significant]
        lines.append(f"   robust pick: {self.suggestion}")
        lines.extend(f"   {bump.describe()}" for bump in real)
        if not real:
            lines.append("   no rise of the median curve is larger than the band around it")
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
                "lr_widget.compare.Comparison for different sweeps)"
            )


# -- running ----------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RepeatStepEvent(StepEvent):
    """A :class:`~lr_widget.engine.StepEvent` that also says which run it belongs to, so any
    consumer of step events (a progress bar, the live curve) follows a repeated sweep as is."""

    run: int
    repeats: int

    @property
    def sweep_fraction_done(self) -> float:
        """Share of all planned steps of all runs completed, counting finished runs as whole."""
        return (self.run + self.fraction_done) / self.repeats


# A callback returning True stops the current run and skips the runs after it.
RepeatCallback = Callable[[RepeatStepEvent], "bool | None"]


class RepeatedSweep:
    """Run one range test ``repeats`` times from the same state, with seeds ``seed + i``.

    All arguments are validated here, once; :meth:`runs` and :meth:`run` may then be called (one
    at a time). :meth:`stop` may be called from another thread.

    Parameters
    ----------
    model, loss_fn, optimizer
        As for :func:`lr_widget.find_lr`.
    train_data
        As for :func:`~lr_widget.find_lr`, but it should shuffle (a ``DataLoader`` with
        ``shuffle=True``) so that each run sees another order; a list, a tuple or an unshuffled
        ``DataLoader`` gives every run the same order, and a ``UserWarning`` says so.
    repeats
        Number of runs, at least 1 (2 or more for a band).
    seed
        Run ``i`` starts with torch, numpy and ``random`` seeded ``seed + i``.
    **find_lr_options
        Any other :func:`~lr_widget.find_lr` option: ``start_lr``, ``end_lr``, ``num_steps``,
        ``mode``, ``val_data``, ``step_fn``, ``beta``, ``diverge_factor``...

    Examples
    --------
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> model = torch.nn.Linear(4, 2)
    >>> dataset = TensorDataset(torch.randn(64, 4), torch.randint(0, 2, (64,)))
    >>> loader = DataLoader(dataset, batch_size=8, shuffle=True)
    >>> sweep = RepeatedSweep(model, loader, repeats=3, num_steps=12)
    >>> done = []
    >>> result = sweep.run(on_run_done=lambda partial: done.append(len(partial.runs)))
    >>> done, result.count.tolist() == [3] * 12
    ([1, 2, 3], True)
    """

    def __init__(
        self,
        model: torch.nn.Module,
        train_data: Iterable[Any],
        loss_fn: LossFn | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        repeats: int = 5,
        seed: int = 0,
        **find_lr_options: Any,
    ) -> None:
        require_int("repeats", repeats, 1)
        require_int("seed", seed, 0)
        if seed + repeats - 1 > MAX_SEED:
            raise ValueError(
                f"seed + repeats - 1 must be at most {MAX_SEED} (numpy's seed range), got "
                f"seed={seed!r}, repeats={repeats!r}"
            )
        self.finder = LRFinder(model, train_data, loss_fn, optimizer, **find_lr_options)
        _warn_if_fixed_order(train_data)
        self.repeats = repeats
        self.seed = seed
        self.result = RepeatedRangeTest([], [], repeats)
        self._stop_event = threading.Event()

    def stop(self) -> None:
        """Stop the current run after its step and start no more (thread-safe)."""
        self._stop_event.set()
        self.finder.stop()

    def runs(
        self, callback: RepeatCallback | None = None, stop_event: threading.Event | None = None
    ) -> Iterator[RangeTestResult]:
        """Run the sweeps lazily, yielding each run's result as it completes.

        :attr:`result` is replaced by a new result holding one more run before each yield (a
        consistent snapshot another thread can draw while the next run goes on). The global
        RNG streams are the caller's again at every yield and once the generator ends (however it
        ends); the seeds only hold inside the runs. A run that is stopped (``stop()``, the event,
        or a callback returning ``True``) is kept, and no further run starts.
        """
        self._stop_event.clear()
        watched = self._stop_event if stop_event is None else stop_event
        self.result = RepeatedRangeTest([], [], self.repeats)
        seeded, caller_rng = False, RNGState.capture()
        try:
            for index in range(self.repeats):
                if self._stop_event.is_set() or (stop_event is not None and stop_event.is_set()):
                    return
                caller_rng = RNGState.capture()  # the caller may have drawn since the last yield
                seed_everything(self.seed + index)
                seeded = True
                run = self.finder.run(self._forward(callback, index), watched)
                self._record(run, self.seed + index)
                caller_rng.restore()
                seeded = False
                yield run
                if run.stop_reason is StopReason.STOPPED:
                    return
        finally:
            if seeded:  # a run raised: hand the caller their own streams back
                caller_rng.restore()

    def run(
        self,
        callback: RepeatCallback | None = None,
        stop_event: threading.Event | None = None,
        on_run_done: Callable[[RepeatedRangeTest], None] | None = None,
    ) -> RepeatedRangeTest:
        """Run every sweep and return the result; ``on_run_done(result_so_far)`` after each run.

        ``callback`` receives a :class:`RepeatStepEvent` after every step of every run.
        """
        for _ in self.runs(callback, stop_event):
            if on_run_done is not None:
                on_run_done(self.result)
        return self.result

    def _record(self, run: RangeTestResult, seed: int) -> None:
        seeds = self.result.seeds if self.result.seeds is not None else []
        self.result = RepeatedRangeTest([*self.result.runs, run], [*seeds, seed], self.repeats)

    def _forward(
        self, callback: RepeatCallback | None, index: int
    ) -> Callable[[StepEvent], bool | None] | None:
        if callback is None:
            return None

        def forward(event: StepEvent) -> bool | None:
            fields = {name: getattr(event, name) for name in StepEvent.__dataclass_fields__}
            wants_stop = callback(RepeatStepEvent(**fields, run=index, repeats=self.repeats))
            if wants_stop:
                self._stop_event.set()
            return wants_stop

        return forward


def _warn_if_fixed_order(train_data: Iterable[Any]) -> None:
    """Warn when every run would see the batches in the same order."""
    fixed = isinstance(train_data, (list, tuple)) or (
        isinstance(train_data, torch.utils.data.DataLoader)
        and isinstance(train_data.sampler, torch.utils.data.SequentialSampler)
    )
    if fixed:
        warnings.warn(
            f"train_data ({type(train_data).__name__}) yields its batches in the same order in "
            "every run, so the band only shows the model's own randomness (dropout), not the "
            "data order's; pass a DataLoader with shuffle=True for a full noise band",
            UserWarning,
            stacklevel=3,
        )


def find_lr_repeated(
    model: torch.nn.Module,
    train_data: Iterable[Any],
    loss_fn: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    repeats: int = 5,
    seed: int = 0,
    callback: RepeatCallback | None = None,
    stop_event: threading.Event | None = None,
    **find_lr_options: Any,
) -> RepeatedRangeTest:
    """Run the range test ``repeats`` times with seeds ``seed + i`` and return the runs and
    their noise band.

    Every run starts from the same weights and optimizer state; the caller's RNG streams are
    restored at the end. See :class:`RepeatedSweep` for the parameters, and for driving the runs
    one at a time (``RepeatedSweep.runs()``).

    Examples
    --------
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    >>> dataset = TensorDataset(torch.randn(96, 4), torch.randint(0, 3, (96,)))
    >>> loader = DataLoader(dataset, batch_size=16, shuffle=True)
    >>> result = find_lr_repeated(model, loader, repeats=3, num_steps=30, end_lr=1.0)
    >>> len(result.runs), result.seeds
    (3, [0, 1, 2])
    """
    sweep = RepeatedSweep(
        model, train_data, loss_fn, optimizer, repeats=repeats, seed=seed, **find_lr_options
    )
    return sweep.run(callback, stop_event)
