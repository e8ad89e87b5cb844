"""Learning-rate schedules for the range test, and writing an LR into an optimizer.

A schedule is a pure function of the step: ``lr_at(step, num_steps, start_lr, end_lr, mode)``.
The first step is exactly ``start_lr`` and the last exactly ``end_lr`` in both modes; floating
point never moves the end points.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import numpy as np
import torch

from lr_widget.results.settings import MODES

Mode = Literal["exp", "linear"]


def lr_at(step: int, num_steps: int, start_lr: float, end_lr: float, mode: str = "exp") -> float:
    """Return the learning rate of ``step`` (0-based) in a sweep of ``num_steps`` steps.

    ``"exp"`` spaces the LRs evenly in log space (Smith's range test), ``"linear"`` evenly in LR.

    Examples
    --------
    >>> lr_at(0, 3, 1e-4, 1e-2)
    0.0001
    >>> round(lr_at(1, 3, 1e-4, 1e-2), 12)
    0.001
    >>> lr_at(2, 3, 1e-4, 1e-2)
    0.01
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if num_steps < 2:
        raise ValueError(f"num_steps must be >= 2, got {num_steps!r}")
    if not 0 <= step < num_steps:
        raise ValueError(f"step must be in [0, {num_steps - 1}], got {step!r}")
    if step == 0:
        return float(start_lr)
    if step == num_steps - 1:
        return float(end_lr)
    fraction = step / (num_steps - 1)
    if mode == "exp":
        log_start, log_end = math.log(start_lr), math.log(end_lr)
        return math.exp(log_start + fraction * (log_end - log_start))
    return float(start_lr + fraction * (end_lr - start_lr))


def lr_schedule(num_steps: int, start_lr: float, end_lr: float, mode: str = "exp") -> np.ndarray:
    """All the LRs of a sweep, as a float64 array of length ``num_steps``."""
    return np.fromiter(iter_lrs(num_steps, start_lr, end_lr, mode), np.float64, count=num_steps)


def iter_lrs(num_steps: int, start_lr: float, end_lr: float, mode: str = "exp") -> Iterator[float]:
    """The LRs of a sweep one at a time, each equal to :func:`lr_at`'s, computed when asked for.

    The engine walks this rather than a list, so a sweep of a huge ``num_steps`` that stops
    early costs nothing up front.

    >>> list(iter_lrs(3, 1e-4, 1e-2)) == [lr_at(i, 3, 1e-4, 1e-2) for i in range(3)]
    True
    """
    lr_at(0, num_steps, start_lr, end_lr, mode)  # the same checks, raised here and not lazily
    return _lrs(num_steps, float(start_lr), float(end_lr), mode)


def _lrs(num_steps: int, start_lr: float, end_lr: float, mode: str) -> Iterator[float]:
    last = num_steps - 1
    log_start, log_end = math.log(start_lr), math.log(end_lr)
    yield start_lr
    for step in range(1, last):
        fraction = step / last  # the arithmetic of lr_at, so the values are the same bits
        if mode == "exp":
            yield math.exp(log_start + fraction * (log_end - log_start))
        else:
            yield float(start_lr + fraction * (end_lr - start_lr))
    yield end_lr


def group_lr_ratios(optimizer: torch.optim.Optimizer) -> list[float]:
    """Each parameter group's LR relative to the largest one (discriminative LRs).

    The swept LR is given to the group with the largest LR; the others keep their ratio to it, so a
    backbone at a tenth of the head's LR stays at a tenth. Groups whose LRs are all zero (or not
    set) are treated as equal.
    """
    return lr_ratios([float(group.get("lr", 0.0)) for group in optimizer.param_groups])


def lr_ratios(lrs: Sequence[float]) -> list[float]:
    """Each LR relative to the largest; all equal when none is above zero.

    >>> lr_ratios([1e-4, 1e-3]), lr_ratios([0.0, 0.0])
    ([0.1, 1.0], [1.0, 1.0])
    """
    largest = max(lrs, default=0.0)
    if largest <= 0:
        return [1.0 for _ in lrs]
    return [lr / largest for lr in lrs]


def apply_lr(optimizer: torch.optim.Optimizer, lr: float, ratios: Sequence[float]) -> None:
    """Set every parameter group's LR to ``lr`` times its ratio.

    A group whose ``lr`` is a tensor (as with ``capturable``/``fused`` optimizers) is filled in
    place, so compiled or captured graphs keep seeing the same tensor.
    """
    if len(ratios) != len(optimizer.param_groups):
        raise ValueError(
            f"ratios has {len(ratios)} entries but the optimizer has "
            f"{len(optimizer.param_groups)} parameter groups"
        )
    for group, ratio in zip(optimizer.param_groups, ratios, strict=True):
        value = lr * ratio
        current = group.get("lr")
        if isinstance(current, torch.Tensor):
            current.fill_(value)
        else:
            group["lr"] = value


def lr_setter(optimizer: torch.optim.Optimizer, ratios: Sequence[float]) -> Callable[[float], None]:
    """``apply_lr(optimizer, lr, ratios)`` as a function of ``lr``, checked once, for every step.

    One parameter group with a plain-number LR (most optimizers) gets the LR written straight in.

    >>> optimizer = torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1)
    >>> set_lr = lr_setter(optimizer, group_lr_ratios(optimizer))
    >>> set_lr(0.5)
    >>> optimizer.param_groups[0]["lr"]
    0.5
    """
    groups = optimizer.param_groups
    if len(ratios) != len(groups):
        raise ValueError(
            f"ratios has {len(ratios)} entries but the optimizer has {len(groups)} parameter groups"
        )
    if len(groups) == 1 and ratios[0] == 1.0 and not isinstance(groups[0].get("lr"), torch.Tensor):
        group = groups[0]

        def set_only_group(lr: float) -> None:
            group["lr"] = lr

        return set_only_group
    return lambda lr: apply_lr(optimizer, lr, ratios)
