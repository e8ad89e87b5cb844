"""One protocol for whatever runs range tests, and the one place that picks the runner.

:func:`~lr_widget.find_lr`, the widget and the command line all call :func:`make_runner` and then
drive what it returns through :class:`RangeTestRunner`: a single sweep
(:class:`~lr_widget.engine.sweep.LRFinder`) or ``repeats`` of them
(:class:`~lr_widget.engine.repeated_sweep.RepeatedSweep`). None of them asks which it holds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch

from lr_widget.engine.batches import LossFn
from lr_widget.engine.repeated_sweep import RepeatedSweep
from lr_widget.engine.sweep import LRFinder
from lr_widget.results.protocol import SweepResult


class RangeTestRunner(Protocol):
    """Runs range tests on one model; its result is a :class:`SweepResult` of either kind."""

    @property
    def finder(self) -> LRFinder:
        """The sweep that trains: the model, optimizer, data, settings and step path."""
        ...

    @property
    def result(self) -> SweepResult | None:
        """The result of the latest sweep (growing while one runs); ``None`` before the first."""
        ...

    def run(
        self,
        callback: Any = None,
        stop_event: threading.Event | None = None,
        on_run_done: Callable[[Any], None] | None = None,
    ) -> SweepResult:
        """Run to the end; ``callback(event)`` after every step (``True`` stops), and
        ``on_run_done(result_so_far)`` after every complete run."""
        ...

    def stop(self) -> None:
        """Stop after the current step (thread-safe)."""
        ...


def make_runner(
    model: torch.nn.Module,
    train_data: Iterable[Any],
    loss_fn: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    repeats: int | None = None,
    seed: int | None = None,
    **options: Any,
) -> LRFinder | RepeatedSweep:
    """One sweep without ``repeats``, else ``repeats`` sweeps seeded ``seed + i`` (``seed``
    defaults to 0); every argument checked before anything trains.

    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> model = torch.nn.Linear(4, 2)
    >>> dataset = TensorDataset(torch.randn(32, 4), torch.randint(0, 2, (32,)))
    >>> loader = DataLoader(dataset, batch_size=8, shuffle=True)
    >>> type(make_runner(model, loader, num_steps=10)).__name__
    'LRFinder'
    >>> type(make_runner(model, loader, repeats=2, num_steps=10)).__name__
    'RepeatedSweep'
    """
    if repeats is None:
        if seed is not None:
            raise TypeError("seed= seeds repeated runs; pass repeats=k with it")
        return LRFinder(model, train_data, loss_fn, optimizer, **options)
    return RepeatedSweep(
        model, train_data, loss_fn, optimizer, repeats=repeats, seed=0 if seed is None else seed,
        **options,
    )  # fmt: skip
