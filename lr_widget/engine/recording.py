"""Recording a sweep: per-step events, the curve in the result, and the decision to stop.

Every rank of a distributed sweep reads the same numbers in the same order, so every rank records
the same curve and stops at the same step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lr_widget.curves.smoothing import DebiasedEMA
from lr_widget.engine.distributed import StepReading
from lr_widget.results.range_test import RangeTestResult, StopReason
from lr_widget.results.settings import SweepSettings


@dataclass(frozen=True)
class StepEvent:
    """What a live consumer learns after each step of the sweep."""

    step: int
    num_steps: int
    lr: float
    loss: float
    smoothed_loss: float
    val_loss: float | None
    smoothed_val_loss: float | None
    elapsed_s: float

    @property
    def fraction_done(self) -> float:
        """Share of the planned steps completed, in (0, 1]."""
        return (self.step + 1) / self.num_steps

    @property
    def eta_s(self) -> float:
        """Estimated seconds left if the sweep runs to its last step."""
        return self.elapsed_s / (self.step + 1) * (self.num_steps - self.step - 1)


_new_event = object.__new__

# A callback returning True asks the sweep to stop after the current step.
StepCallback = Callable[[StepEvent], "bool | None"]


class SweepEnded(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside the loop to end the sweep with a given reason."""

    def __init__(self, reason: StopReason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class CurveRecorder:
    """Writes each step, once read, into the result, smooths it, and decides when to stop.

    Every rank reads the same numbers in the same order, so every rank records the same curve and
    stops at the same step.
    """

    def __init__(self, result: RangeTestResult, settings: SweepSettings, ranks: int) -> None:
        self.result = result
        self.settings = settings
        self.ranks = ranks
        self.train_ema = DebiasedEMA(settings.beta)
        self.val_ema = DebiasedEMA(settings.beta)
        self.best = math.inf
        self.warmup = divergence_warmup(settings.num_steps)
        self.started = time.perf_counter()
        self._seconds_by_step: dict[int, float] = {}
        self._step_times: list[float] = result.timings.setdefault("step_s", [])

    def step_took(self, step: int, seconds: float) -> None:
        """Note the host time of a trained step, recorded when the step is."""
        self._seconds_by_step[step] = seconds

    def reveal(self, readings: list[StepReading]) -> Iterator[StepEvent]:
        """Record and yield each reading in turn, raising :class:`SweepEnded` at the first that
        ends the sweep (later ones, trained ahead, are dropped)."""
        for reading in readings:
            event = self.record(reading)
            yield event
            self.check(reading, event)

    def record(self, reading: StepReading) -> StepEvent:
        """Append the step to the result and return its event; raise if a rank asked to stop."""
        if reading.stop_ranks:
            raise SweepEnded(
                StopReason.STOPPED,
                f"stopped by the caller on {reading.stop_ranks} of {self.ranks} ranks before "
                f"step {reading.step}",
            )
        result = self.result
        result.lrs.append(reading.lr)
        result.losses.append(reading.loss)
        if result.val_losses is not None and reading.val_loss is not None:
            result.val_losses.append(reading.val_loss)
        self._step_times.append(self._seconds_by_step.pop(reading.step))
        smoothed = self.train_ema.update(reading.loss)
        smoothed_val = None if reading.val_loss is None else self.val_ema.update(reading.val_loss)
        # A frozen dataclass's __init__ sets each field through object.__setattr__: a third of
        # this method's cost. The same fields, written once into the new instance's __dict__.
        event = _new_event(StepEvent)
        vars(event).update(
            step=reading.step, num_steps=self.settings.num_steps, lr=reading.lr,
            loss=reading.loss, smoothed_loss=smoothed, val_loss=reading.val_loss,
            smoothed_val_loss=smoothed_val, elapsed_s=time.perf_counter() - self.started,
        )  # fmt: skip
        return event

    def check(self, reading: StepReading, event: StepEvent) -> None:
        """Raise :class:`SweepEnded` if the step's loss is non-finite or has diverged."""
        raw = event.loss if event.val_loss is None else event.val_loss
        if not math.isfinite(raw):
            ranks = ""
            if self.ranks > 1 and reading.non_finite_ranks:
                ranks = f", non-finite on {reading.non_finite_ranks} of {self.ranks} ranks"
            raise SweepEnded(
                StopReason.NON_FINITE,
                f"loss was {raw} at step {event.step} (lr {event.lr:.2e}){ranks}",
            )
        watched = (
            event.smoothed_loss if event.smoothed_val_loss is None else event.smoothed_val_loss
        )
        # The first few averages are of a handful of batches: on a trained model, where one
        # batch's loss can be ten times the next, the lowest of them is a lucky batch, and
        # "4 x the best" fired at step 2. The best counts from the end of that warm-up.
        if event.step >= self.warmup:
            self.best = min(self.best, watched)
        factor = self.settings.diverge_factor
        if diverged(watched, self.best, factor):
            raise SweepEnded(
                StopReason.DIVERGED,
                f"smoothed loss {watched:.4g} exceeded {factor:g} x its minimum {self.best:.4g} at "
                f"step {event.step} (lr {event.lr:.2e})",
            )


DIVERGENCE_WARMUP_STEPS = 10
"""Steps whose smoothed loss cannot be the best the divergence test compares against."""


def divergence_warmup(num_steps: int) -> int:
    """The steps, from the first, not yet counted in the best smoothed loss: the EMA's first
    :data:`DIVERGENCE_WARMUP_STEPS`, at most a tenth of the sweep.

    >>> divergence_warmup(100), divergence_warmup(30), divergence_warmup(5)
    (10, 3, 0)
    """
    return min(DIVERGENCE_WARMUP_STEPS, num_steps // 10)


def diverged(smoothed: float, best: float, factor: float) -> bool:
    """Whether ``smoothed`` is ``factor`` times above ``best``; for losses that can be negative
    (log-likelihoods), "times" is measured as a distance of ``(factor - 1) * |best|``."""
    if not math.isfinite(factor):
        return False
    return smoothed > best + (factor - 1.0) * abs(best)
