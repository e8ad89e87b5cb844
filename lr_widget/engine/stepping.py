"""Training at one LR: optimizer steps over micro-batches, with a GradScaler, clipping or a closure.

:class:`Stepper` is what the engine calls once per LR step. It knows the ways a training step can
be taken (plain, with gradient accumulation, under autocast, through a GradScaler that may skip a
step, or through a closure for optimizers such as LBFGS whose ``step`` re-evaluates the loss) and
picks the plain path once, when nothing else is asked for: the per-step cost of the range test on
a tiny model is mostly this Python code, so the common case does no work it does not need.

Every loss it returns stays on the device, detached and unread.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import torch

from lr_widget.engine.batches import BatchStream, LossComputer, move_to_device
from lr_widget.engine.distributed import any_rank
from lr_widget.engine.recording import SweepEnded
from lr_widget.engine.scaling import ScalerStepWatch
from lr_widget.results.range_test import StopReason
from lr_widget.results.settings import SweepSettings

_NO_CONTEXT = contextlib.nullcontext()  # stateless and reusable: one for every step


def needs_closure(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` requires a closure (LBFGS and the like: no default for it).

    >>> needs_closure(torch.optim.LBFGS(torch.nn.Linear(2, 1).parameters()))
    True
    >>> needs_closure(torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1))
    False
    """
    try:
        parameter = inspect.signature(optimizer.step).parameters.get("closure")
    except (TypeError, ValueError):
        return False
    return parameter is not None and parameter.default is inspect.Parameter.empty


class Stepper:
    """Takes the sweep's optimizer steps on ``model``; see :meth:`train_at_lr`."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None,
        losses: LossComputer,
        device: torch.device,
        distributed: bool,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler
        self.losses = losses
        self.device = device
        self.distributed = distributed
        self.closure = needs_closure(optimizer)
        if self.closure and scaler is not None:
            raise ValueError(
                f"grad_scaler cannot be used with {type(optimizer).__name__}: its step takes a "
                "closure, which a GradScaler cannot unscale; pass grad_scaler=None"
            )
        self._scaler_steps: ScalerStepWatch | None = None
        self._prepared_for: SweepSettings | None = None
        self._step: Callable[[BatchStream, SweepSettings], tuple[torch.Tensor, bool]]
        self._step = self._optimizer_step
        self.trainable = [p for p in model.parameters() if p.requires_grad]

    # -- one LR step -----------------------------------------------------------------------
    def train_at_lr(self, batches: BatchStream, settings: SweepSettings) -> torch.Tensor:
        """Take ``batches_per_step`` optimizer steps at the current LR; return their loss sum.

        The sum stays on the device, unread. With a GradScaler, a skipped (overflowing) step is
        retried on the next batch: it does not count, so the sweep does not advance on a step that
        changed nothing; only then is the loss read at once, to stop on a non-finite one.
        """
        if settings is not self._prepared_for:  # chosen once per sweep, not once per step
            self._step, self._prepared_for = self._step_function(settings), settings
        step = self._step
        if settings.batches_per_step == 1 and self.scaler is None:
            return step(batches, settings)[0]
        total: torch.Tensor | None = None
        taken = skipped = 0
        while taken < settings.batches_per_step:
            loss, stepped = step(batches, settings)
            if stepped:
                total = loss if total is None else total + loss  # no zeros tensor: per-step cost
                taken += 1
                skipped = 0
                continue
            if any_rank(~torch.isfinite(loss), self.distributed):
                return loss if total is None else total + loss  # the step's mean is non-finite too
            skipped += 1
            if skipped > settings.max_skipped_steps:
                raise SweepEnded(
                    StopReason.NON_FINITE,
                    f"the GradScaler skipped {skipped} steps in a row (inf/NaN gradients)",
                )
        assert total is not None  # batches_per_step >= 1
        return total

    def _step_function(
        self, settings: SweepSettings
    ) -> Callable[[BatchStream, SweepSettings], tuple[torch.Tensor, bool]]:
        if self.closure:
            return self._closure_step
        plain = (
            self.scaler is None
            and settings.accumulation_steps == 1
            and settings.amp_dtype is None
            and settings.max_grad_norm is None
        )
        return self._plain_step if plain else self._optimizer_step

    def _plain_step(
        self, batches: BatchStream, settings: SweepSettings
    ) -> tuple[torch.Tensor, bool]:
        """The common case, with nothing to decide: zero, forward, backward, step."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.losses(move_to_device(next(batches), self.device))
        loss.backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        detached = loss.detach()
        return (detached if detached.dtype is torch.float32 else detached.float()), True

    def _optimizer_step(
        self, batches: BatchStream, settings: SweepSettings
    ) -> tuple[torch.Tensor, bool]:
        """One optimizer step over ``accumulation_steps`` micro-batches.

        Returns the mean micro-batch loss (detached) and whether the optimizer actually stepped.
        """
        optimizer, scaler = self.optimizer, self.scaler
        optimizer.zero_grad(set_to_none=True)
        mean_loss = self._accumulate(
            [next(batches) for _ in range(settings.accumulation_steps)], settings
        )
        if scaler is None:
            if settings.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.trainable, settings.max_grad_norm)
            optimizer.step()
            return mean_loss, True
        if settings.max_grad_norm is not None:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.trainable, settings.max_grad_norm)
        assert self._scaler_steps is not None
        return mean_loss, self._scaler_steps.step()

    def _accumulate(self, micro_batches: list[Any], settings: SweepSettings) -> torch.Tensor:
        """Forward and backward over ``micro_batches``; their mean loss, detached."""
        count, scaler = len(micro_batches), self.scaler
        total: torch.Tensor | None = None
        for index, raw in enumerate(micro_batches):
            batch = move_to_device(raw, self.device)
            with self._gradient_sync(last=index == count - 1):
                with self.autocast(settings):
                    loss = self.losses(batch)
                # Without accumulation, no division: it would add a node to every backward pass.
                scaled = loss / count if count > 1 else loss
                (scaler.scale(scaled) if scaler is not None else scaled).backward()  # type: ignore[no-untyped-call]
            detached = loss.detach().float()
            total = detached if total is None else total + detached
        assert total is not None  # accumulation_steps >= 1
        return total / count if count > 1 else total

    def _closure_step(
        self, batches: BatchStream, settings: SweepSettings
    ) -> tuple[torch.Tensor, bool]:
        """One step of an optimizer that re-evaluates the loss (LBFGS) on the same micro-batches.

        The recorded loss is the closure's first evaluation: the loss before the update, as for
        every other optimizer.
        """
        micro_batches = [next(batches) for _ in range(settings.accumulation_steps)]
        first: list[torch.Tensor] = []

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self._accumulate(micro_batches, settings)
            if settings.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(self.trainable, settings.max_grad_norm)
            if not first:
                first.append(loss)
            return loss

        self.optimizer.step(closure)  # type: ignore[arg-type]  # LBFGS takes a tensor too
        return first[0], True

    # -- validation ------------------------------------------------------------------------
    def validation_loss_sum(
        self, val_batches: list[Any], train_modes: list[bool], settings: SweepSettings
    ) -> torch.Tensor:
        """The sum of the validation batches' losses, on the device, in eval mode."""
        self.model.eval()
        try:
            total = torch.zeros((), device=self.device)
            with torch.no_grad(), self.autocast(settings):
                for batch in val_batches:
                    total += self.losses(batch, require_grad=False).detach().float()
            return total
        finally:
            for module, training in zip(self.model.modules(), train_modes, strict=False):
                module.training = training

    # -- contexts --------------------------------------------------------------------------
    @contextlib.contextmanager
    def watching_scaler_steps(self) -> Iterator[None]:
        """Count the GradScaler's real steps while the sweep runs (see :class:`ScalerStepWatch`)."""
        if self.scaler is None:
            yield
            return
        self._scaler_steps = ScalerStepWatch(self.optimizer, self.scaler)
        try:
            yield
        finally:
            self._scaler_steps.close()
            self._scaler_steps = None

    def _gradient_sync(self, last: bool) -> contextlib.AbstractContextManager[Any]:
        """DDP all-reduces gradients on the last micro-batch only, as in a training loop."""
        if last or not isinstance(self.model, torch.nn.parallel.DistributedDataParallel):
            return _NO_CONTEXT
        return self.model.no_sync()

    def autocast(self, settings: SweepSettings) -> contextlib.AbstractContextManager[Any]:
        """Autocast in the sweep's ``amp_dtype``, or a shared null context."""
        if settings.amp_dtype is None:
            return _NO_CONTEXT
        dtype = getattr(torch, settings.amp_dtype)  # a name of settings.AMP_DTYPES
        return torch.autocast(device_type=self.device.type, dtype=dtype)
