"""Running the range test inside a ``torch.distributed`` job, and reading each step's numbers once.

Under DDP (``torchrun``, Accelerate, or any launcher that initialises the default process group)
every rank trains on its own shard of the data. After each LR step the engine packs what the ranks
must agree on (the sum of their losses, the sum of their validation losses, whether their loss was
finite, whether their caller asked to stop) into one small tensor and all-reduces it, so every
rank records the same mean loss and takes the same stop decision at the same step. A NaN, a
divergence or a stop request on any rank therefore ends the sweep everywhere, and no rank is left
waiting in a collective that the others will never join.

That tensor is also the only thing the host reads back from the device per step, and
:class:`StepSync` may read it ``lag`` steps late: on an accelerator the host then queues the next
steps while the device still works, and the divergence check simply runs a step or two behind.
Steps trained after the one that stopped the sweep are discarded, so the recorded curve is the
same for every lag.

Save a result from one process only, with :func:`save_on_main_process` or ``find_lr(...,
save_to=path)``; every rank holds the same curve:

>>> is_main_process()  # no process group here: this is the only process
True
"""

from __future__ import annotations

import math
import os
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.distributed as dist

if TYPE_CHECKING:
    from lr_widget.results.range_test import RangeTestResult


def is_distributed() -> bool:
    """Whether this process belongs to an initialised default process group of two or more ranks."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """The number of ranks of the default process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default process group (0 without one)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_main_process() -> bool:
    """Whether this process should write files and print: rank 0, or the only process."""
    return rank() == 0


def save_on_main_process(result: RangeTestResult, path: str | os.PathLike[str]) -> Path | None:
    """Write ``result`` as JSON to ``path`` on the main process only; return the path it wrote.

    Every rank holds the same curve after a distributed sweep, so one file is enough; the other
    ranks return ``None`` without touching the file system.
    """
    return result.save(path) if is_main_process() else None


def resolve_distributed(requested: bool | None) -> bool:
    """Decide whether a sweep synchronises its steps across ranks.

    ``None`` follows the environment (an initialised process group of two or more ranks);
    ``True`` requires one; ``False`` runs an independent sweep in this process (only for a model
    that is not wrapped in ``DistributedDataParallel``, whose backward would wait for the others).
    """
    if requested is not None and not isinstance(requested, bool):
        raise TypeError(f"distributed must be True, False or None, got {requested!r}")
    if requested is None:
        return is_distributed()
    if requested and not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            "distributed=True but torch.distributed has no initialised process group; call "
            "torch.distributed.init_process_group() first (torchrun sets up its environment), "
            "or pass distributed=None to follow the environment"
        )
    return requested


def default_loss_read_lag(device: torch.device) -> int:
    """Steps the host may run ahead of ``device`` before reading a step's loss.

    On the CPU reading a number costs nothing, so the check runs on time; on an accelerator one
    step of lag lets the host queue the next step before waiting for the previous one.
    """
    return 0 if device.type == "cpu" else 1


def any_rank(flag: torch.Tensor, distributed: bool) -> bool:
    """Whether ``flag`` (a boolean scalar on the device) is true on any rank; reads it at once.

    Every rank must call this at the same point when ``distributed`` is true.
    """
    count = flag.to(torch.float64).reshape(1)
    if distributed:
        dist.all_reduce(count, op=dist.ReduceOp.SUM)
    return bool(count.item() > 0)


class StepReading(NamedTuple):
    """One step's numbers as read on the host: the same on every rank.

    Attributes
    ----------
    step, lr
        The step and the LR it was trained at.
    loss, val_loss
        The mean training loss over the step's optimizer steps and over the ranks, and likewise
        the validation loss (``None`` without validation data).
    non_finite_ranks, stop_ranks
        How many ranks saw a non-finite loss, and how many asked to stop before this step.
    """

    step: int
    lr: float
    loss: float
    val_loss: float | None
    non_finite_ranks: int
    stop_ranks: int


class _PendingStep(NamedTuple):  # a tuple: built every step, so cheap to build
    step: int
    lr: float
    values: torch.Tensor


class StepSync:
    """Packs each step's numbers, reduces them across ranks, and reads them ``lag`` steps later.

    Parameters
    ----------
    lag
        How many newer steps may be queued before a step is read; 0 reads each step at once.
    distributed
        All-reduce every step across the default process group (each rank must push the same
        steps in the same order).
    optimizer_steps
        Optimizer steps per LR step on each rank: the loss sums are divided by this (and by the
        number of ranks) to give the mean.
    val_batches
        Validation batches per step on each rank, or ``None`` without validation.

    Examples
    --------
    >>> sync = StepSync(lag=1, distributed=False, optimizer_steps=2, val_batches=None)
    >>> sync.push(0, 1e-3, torch.tensor(3.0))
    >>> sync.ready()  # one step of lag: nothing read yet
    []
    >>> sync.push(1, 1e-2, torch.tensor(5.0))
    >>> [reading.loss for reading in sync.ready()]
    [1.5]
    >>> [reading.loss for reading in sync.drain()]
    [2.5]
    """

    def __init__(
        self, *, lag: int, distributed: bool, optimizer_steps: int, val_batches: int | None
    ) -> None:
        self.lag = lag
        self.distributed = distributed
        self.ranks = world_size() if distributed else 1
        self._loss_count = optimizer_steps * self.ranks
        self._val_count = None if val_batches is None else val_batches * self.ranks
        self._pending: deque[_PendingStep] = deque()

    @property
    def pending(self) -> int:
        """Steps pushed but not yet read."""
        return len(self._pending)

    def push(
        self,
        step: int,
        lr: float,
        loss_sum: torch.Tensor,
        val_sum: torch.Tensor | None = None,
        stop_requested: bool = False,
    ) -> None:
        """Queue a step's loss sums (0-d device tensors, unread) and this rank's stop request.

        The sums must not require grad (the engine builds them from detached losses).

        Without ``distributed`` a stop request is the caller's business (it can stop before
        training); with it, the request travels with the step so that every rank learns of it.
        """
        if self.distributed:
            values = _pack_for_ranks(loss_sum, val_sum, stop_requested)
            dist.all_reduce(values, op=dist.ReduceOp.SUM)
        elif val_sum is None:
            values = loss_sum
        else:
            values = torch.stack([loss_sum, val_sum])
        self._pending.append(_PendingStep(step, lr, values))

    def ready(self) -> list[StepReading]:
        """Read the steps that are more than ``lag`` steps old (one device read each)."""
        readings = []
        while len(self._pending) > self.lag:
            readings.append(self._read(self._pending.popleft()))
        return readings

    def drain(self) -> list[StepReading]:
        """Read every queued step (at the end of the schedule)."""
        readings = [self._read(pending) for pending in self._pending]
        self._pending.clear()
        return readings

    def _read(self, pending: _PendingStep) -> StepReading:
        if not self.distributed and self._val_count is None:  # the lone sweep: one number
            loss = pending.values.item() / self._loss_count
            finite = int(not math.isfinite(loss))
            return StepReading(pending.step, pending.lr, loss, None, finite, 0)
        read: float | list[float] = pending.values.tolist()  # this step's one device read
        values = read if isinstance(read, list) else [read]  # a 0-d tensor reads as a number
        loss = values[0] / self._loss_count
        val_loss = None if self._val_count is None else values[1] / self._val_count
        if self.distributed:
            non_finite, stop = int(values[2]), int(values[3])
        else:
            non_finite, stop = int(not _all_finite(loss, val_loss)), 0
        return StepReading(pending.step, pending.lr, loss, val_loss, non_finite, stop)


def _pack_for_ranks(
    loss_sum: torch.Tensor, val_sum: torch.Tensor | None, stop_requested: bool
) -> torch.Tensor:
    """``[loss_sum, val_sum, non_finite, stop]`` in float64 on the loss's device.

    float64 keeps the sum over many ranks from overflowing where no rank's loss did. The stop flag
    is written by a fill kernel, never copied from the host, so packing never waits on the device.
    """
    loss = loss_sum.detach().to(torch.float64)
    val = torch.zeros_like(loss) if val_sum is None else val_sum.detach().to(torch.float64)
    non_finite = ~(torch.isfinite(loss) & torch.isfinite(val))
    stop = torch.full((), float(stop_requested), dtype=torch.float64, device=loss.device)
    return torch.stack([loss, val, non_finite.to(torch.float64), stop])


def _all_finite(loss: float, val_loss: float | None) -> bool:
    return math.isfinite(loss) and (val_loss is None or math.isfinite(val_loss))
