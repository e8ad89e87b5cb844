"""Confirmation probes: a few short runs around a suggested LR, each from the same state.

:func:`confirm_lr` (or :func:`confirm_with`, given a sweep's
:class:`~lr_widget.engine.sweep.LRFinder`) trains them through the sweep's own
:class:`~lr_widget.engine.stepping.Stepper`, so a probe takes a step exactly as the sweep does:
the same closure for LBFGS, autocast, GradScaler, accumulation and
clipping. Under ``torch.distributed`` every rank reads each step's loss averaged over the ranks, so
a non-finite loss on one rank ends that probe on all of them at the same step (none is left waiting
in an all-reduce), and every rank reaches the same verdict. What the probes recorded is judged by
:func:`~lr_widget.results.confirmation.compare_probes`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from lr_widget.curves.arguments import require_lr
from lr_widget.engine.batches import BatchStream, LossFn, StepFn
from lr_widget.engine.claims import claimed
from lr_widget.engine.recording import SweepEnded
from lr_widget.engine.state import TrainingState
from lr_widget.engine.sweep import LRFinder
from lr_widget.results.confirmation import (
    DEFAULT_FACTORS,
    TAIL_FRACTION,
    Confirmation,
    check_probe_options,
    compare_probes,
)


def confirm_lr(
    model: torch.nn.Module,
    train_data: Iterable[Any],
    lr: float,
    loss_fn: LossFn | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    factors: Sequence[float] = DEFAULT_FACTORS,
    steps: int = 30,
    tail: float = TAIL_FRACTION,
    step_fn: StepFn | None = None,
    **options: Any,
) -> Confirmation:
    """Train a short probe at each ``lr * factor`` from the current state and compare them.

    After each probe the model (parameters, buffers, gradients, train/eval modes), the optimizer
    (state and hyper-parameters) and the RNG streams are restored exactly, so the probes start
    alike and the caller gets its objects back as they were. Each probe reads ``train_data``
    from its start. Every parameter group's LR is scaled alike, so that the largest is the
    candidate (as the range test records the largest).

    Parameters
    ----------
    model
        Any ``torch.nn.Module``; batches are moved to the device of its parameters.
    train_data
        A DataLoader or any re-iterable of batches, as for :func:`lr_widget.find_lr`.
    lr
        The suggested LR (> 0).
    loss_fn
        ``loss_fn(output, target)``; ``None`` infers it as ``find_lr`` does.
    optimizer
        Used as is and restored; ``None`` builds an AdamW.
    factors
        At least two distinct positive multiples of ``lr`` to try.
    steps
        Training steps per probe (>= 4).
    tail
        Fraction of each probe, at its end, whose mean loss is compared (in (0, 1]).
    step_fn
        ``step_fn(model, batch) -> loss`` instead of ``loss_fn``, as for ``find_lr``.
    **options
        How a training step is taken, as for :func:`~lr_widget.find_lr`: ``grad_scaler``,
        ``accumulation_steps``, ``max_grad_norm``, ``amp_dtype``, ``distributed``,
        ``scheduler`` (restored with the rest). An optimizer whose ``step`` needs a closure
        (LBFGS) is stepped through one, as in the sweep.

    Returns
    -------
    Confirmation

    Examples
    --------
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Linear(4, 1)
    >>> data = [(torch.randn(16, 4), torch.randn(16, 1)) for _ in range(4)]
    >>> found = confirm_lr(model, data, 1e-2, torch.nn.functional.mse_loss, steps=8)
    >>> len(found.probes), found.steps
    (3, 24)
    """
    centre = require_lr("lr", lr)
    check_probe_options(factors, steps, tail)
    finder = LRFinder(model, train_data, loss_fn, optimizer, step_fn=step_fn, **options)
    return confirm_with(finder, centre, factors=factors, steps=steps, tail=tail)


def confirm_with(
    finder: LRFinder,
    lr: float,
    *,
    factors: Sequence[float] = DEFAULT_FACTORS,
    steps: int = 30,
    tail: float = TAIL_FRACTION,
) -> Confirmation:
    """:func:`confirm_lr` with the model, data, optimizer and step settings of ``finder``.

    ``find_lr(confirm=True)`` and the widget's Confirm button use it, so the probes train as
    that sweep trained.
    """
    centre = require_lr("lr", lr)
    candidates, steps, tail = check_probe_options(factors, steps, tail)
    optimizer = finder.optimizer
    base = [float(group["lr"]) for group in optimizer.param_groups]
    largest = max(base)
    runs = []
    with claimed("confirmation probes", model=finder.model, optimizer=optimizer):
        saved = TrainingState.capture(
            finder.model, optimizer, finder.scaler, finder.scheduler, finder.outer_state
        )
        for factor in candidates:
            for group, group_lr in zip(optimizer.param_groups, base, strict=True):
                scale = centre * factor / largest if largest > 0 else centre * factor
                group["lr"] = group_lr * scale if largest > 0 else scale
            try:
                runs.append(_probe(finder, steps))
            finally:
                saved.restore()  # the LRs too: they are hyper-parameters in the optimizer
    return compare_probes([centre * factor for factor in candidates], runs, centre, tail)


def _probe(finder: LRFinder, steps: int) -> list[float]:
    """Train ``steps`` optimizer steps; their losses (the mean over ranks), ending at the first
    non-finite one."""
    stepper, settings = finder.stepper, finder.settings
    batches = BatchStream(finder.train_data)  # each probe reads the data from its start
    finder.model.train()
    recorded: list[float] = []
    with stepper.watching_scaler_steps():
        for _ in range(steps):
            try:
                loss = stepper.train_at_lr(batches, settings) / settings.batches_per_step
            except SweepEnded:  # the GradScaler skipped step after step: inf/NaN gradients
                recorded.append(math.nan)
                break
            value = _mean_over_ranks(loss, finder.distributed)
            recorded.append(value)
            if not math.isfinite(value):
                break
    return recorded


def _mean_over_ranks(loss: torch.Tensor, distributed: bool) -> float:
    """The loss averaged over the ranks, read on the host: the same number on every rank (a NaN
    on one rank is a NaN on all)."""
    reading = loss.detach().to(torch.float64).reshape(1)
    if distributed:
        dist.all_reduce(reading, op=dist.ReduceOp.SUM)
        reading /= dist.get_world_size()
    return float(reading.item())
