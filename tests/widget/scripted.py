"""Deterministic sweeps for the widget tests: a scripted ``step_fn`` and widgets that clean up.

A :class:`ScriptedStep` makes the timing deterministic: it can hold the sweep at a given step until
the test releases it, raise at a step, dictate the loss, and advance a fake clock.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from lr_widget.widget import LRWidget
from tests.helpers import make_batches, make_classifier

HOLD_TIMEOUT_S = 20.0


class FakeClock:
    """A clock the sweep advances by ``tick`` seconds per step (replaces ``runner.monotonic``)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptedStep:
    """A ``step_fn`` for :func:`tests.helpers.make_classifier` that the test scripts per step.

    Parameters
    ----------
    hold_at
        Step at which the sweep waits until :meth:`release` (``reached`` is set on arrival).
    raise_at
        Step at which it raises ``RuntimeError("bad batch at step N")``.
    losses
        Fixed loss per step (the model still runs, with zero gradient).
    loss_of_lr
        Loss as a function of the current LR of ``optimizer`` (set :attr:`optimizer`).
    clock, tick
        A :class:`FakeClock` advanced by ``tick`` every step.
    """

    def __init__(
        self,
        *,
        hold_at: int | None = None,
        raise_at: int | None = None,
        losses: Sequence[float] | None = None,
        loss_of_lr: Callable[[float], float] | None = None,
        clock: FakeClock | None = None,
        tick: float = 0.0,
    ) -> None:
        self.hold_at, self.raise_at = hold_at, raise_at
        self.losses, self.loss_of_lr = losses, loss_of_lr
        self.clock, self.tick = clock, tick
        self.optimizer: torch.optim.Optimizer | None = None
        self.calls = 0
        self.reached = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def wait_until_held(self) -> None:
        assert self.reached.wait(HOLD_TIMEOUT_S), f"the sweep never reached step {self.hold_at}"

    def __call__(self, model: torch.nn.Module, batch: Any) -> torch.Tensor:
        step = self.calls
        self.calls += 1
        if self.clock is not None:
            self.clock.now += self.tick
        if step == self.hold_at:
            self.reached.set()
            assert self._released.wait(HOLD_TIMEOUT_S), "the test never released the sweep"
        if step == self.raise_at:
            raise RuntimeError(f"bad batch at step {step}")
        x, y = batch
        loss = F.cross_entropy(model(x), y)
        if self.losses is not None:
            return loss * 0.0 + float(self.losses[step])
        if self.loss_of_lr is not None:
            assert self.optimizer is not None
            return loss * 0.0 + self.loss_of_lr(float(self.optimizer.param_groups[0]["lr"]))
        return loss


def valley_curve(lr: float) -> float:
    """A textbook range-test curve: flat, a steep descent around 1e-3, then a blow-up."""
    x = math.log10(lr)
    return 2.0 - math.tanh(x + 3.0) + 4.0 * max(0.0, x + 1.0) ** 2


class Setup:
    """A model, its data and optimizer, and a factory of widgets closed at teardown."""

    def __init__(self) -> None:
        self.model = make_classifier(seed=0)
        self.data = make_batches(seed=0, count=4, size=16)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9)
        self.widgets: list[LRWidget] = []
        self.steps: list[ScriptedStep] = []

    def widget(self, step: ScriptedStep | None = None, **options: Any) -> LRWidget:
        """``LRWidget(model, data, optimizer=..., step_fn=step, **options)``, not autostarted.

        ``data=`` and ``optimizer=`` (``None``: the widget's default AdamW) replace the setup's.
        """
        data = options.pop("data", self.data)
        options.setdefault("optimizer", self.optimizer)
        options.setdefault("autostart", False)
        options.setdefault("num_steps", 20)
        options.setdefault("start_lr", 1e-5)
        options.setdefault("end_lr", 1e-1)
        if step is not None:
            step.optimizer = options["optimizer"]
            self.steps.append(step)
            options["step_fn"] = step
        widget = LRWidget(self.model, data, **options)
        self.widgets.append(widget)
        return widget

    def close(self) -> None:
        for step in self.steps:
            step.release()
        for widget in self.widgets:
            widget.close()


def shuffled_loader(seed: int = 0, size: int = 64, batch_size: int = 16) -> Any:
    """A shuffling DataLoader of :func:`tests.helpers.make_batches` data: repeated runs then
    see different batch orders (a list would make RepeatedSweep warn)."""
    from torch.utils.data import DataLoader, TensorDataset

    batches = make_batches(seed=seed, count=size // batch_size, size=batch_size)
    inputs = torch.cat([x for x, _ in batches])
    targets = torch.cat([y for _, y in batches])
    return DataLoader(TensorDataset(inputs, targets), batch_size=batch_size, shuffle=True)
