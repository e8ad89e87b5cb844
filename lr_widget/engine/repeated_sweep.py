"""Running repeated range tests: the same sweep run k times from the same state.

One sweep's curve wiggles with the batch order and the dropout masks, so a bump in it may be real
or noise. :class:`RepeatedSweep` runs the same range test ``repeats`` times from the same starting
state; before run ``i`` it seeds torch, numpy and ``random`` with ``seed + i`` (so a shuffling
DataLoader yields another order and dropout draws other masks), the engine restores the model,
optimizer and RNG streams after every run, and the caller's own RNG streams are restored at the end.
The runs and their noise band are a :class:`~lr_widget.results.repeated.RepeatedRangeTest`.

The runs differ only as much as their randomness does: give a shuffling DataLoader, or every run
sees the same batch order (a ``UserWarning`` says so) and the band shows dropout noise alone.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from lr_widget.curves.arguments import require_int
from lr_widget.engine.batches import LossFn
from lr_widget.engine.recording import StepEvent
from lr_widget.engine.state import MAX_SEED, RNGState, seed_everything
from lr_widget.engine.sweep import LRFinder
from lr_widget.results.range_test import RangeTestResult, StopReason
from lr_widget.results.repeated import (
    RepeatedRangeTest,
)


@dataclass(frozen=True, kw_only=True)
class RepeatStepEvent(StepEvent):
    """A :class:`~lr_widget.engine.recording.StepEvent` that also says which run it belongs to, so
    any consumer of step events (a progress bar, the live curve) follows a repeated sweep as is."""

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
    >>> done, result.smoothed_band().count.tolist() == [3] * 12
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
        self.result: RepeatedRangeTest | None = None  # a new one when the runs begin
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
                assert self.result is not None
                on_run_done(self.result)
        assert self.result is not None  # runs() made one before anything else
        return self.result

    def _record(self, run: RangeTestResult, seed: int) -> None:
        assert self.result is not None
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
