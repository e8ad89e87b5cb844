"""The range-test engine: schedule, batches, losses, per-step options and stopping."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from lr_widget.curves.smoothing import debiased_ema
from lr_widget.engine.recording import StepEvent
from lr_widget.engine.schedules import lr_schedule
from lr_widget.engine.sweep import LRFinder
from lr_widget.find import find_lr
from lr_widget.results.range_test import StopReason
from tests.helpers import make_batches, make_classifier


class CountingSGD(torch.optim.SGD):
    """SGD that counts its steps and remembers the LR of each."""

    def __init__(self, params: Any, lr: float = 0.01) -> None:
        super().__init__(params, lr=lr)
        self.step_lrs: list[float] = []

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        self.step_lrs.append(self.param_groups[0]["lr"])
        return super().step(closure)


class CountingData:
    """A re-iterable of batches that counts how many were drawn."""

    def __init__(self, batches: list[Any]) -> None:
        self.batches = batches
        self.drawn = 0

    def __iter__(self) -> Iterator[Any]:
        for batch in self.batches:
            self.drawn += 1
            yield batch


@pytest.mark.parametrize("mode", ["exp", "linear"])
def test_recorded_lrs_follow_the_schedule_with_exact_end_points(mode: str) -> None:
    result = find_lr(
        make_classifier(), make_batches(), start_lr=1e-6, end_lr=0.3, num_steps=37, mode=mode,
        diverge_factor=math.inf,
    )  # fmt: skip
    assert result.lrs[0] == 1e-6
    assert result.lrs[-1] == 0.3
    assert result.lrs == lr_schedule(37, 1e-6, 0.3, mode).tolist()
    assert result.stop_reason is StopReason.COMPLETED


def test_exp_schedule_is_evenly_spaced_in_log_space() -> None:
    lrs = lr_schedule(11, 1e-5, 1e5, "exp")
    assert [math.log10(lr) for lr in lrs] == pytest.approx(list(range(-5, 6, 1)), abs=1e-12)


def test_loader_is_iterated_again_when_it_runs_out() -> None:
    data = CountingData(make_batches(count=3))
    result = find_lr(make_classifier(), data, num_steps=10, end_lr=1e-3)
    assert result.num_steps == 10
    assert data.drawn == 10


def test_discriminative_learning_rates_keep_their_ratios() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.01},
            {"params": list(model[1].parameters()) + list(model[4].parameters()), "lr": 0.1},
        ]
    )
    seen: list[tuple[float, float]] = []

    class Spy(torch.nn.Module):
        def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            seen.append((optimizer.param_groups[0]["lr"], optimizer.param_groups[1]["lr"]))
            return F.cross_entropy(output, target)

    result = find_lr(model, make_batches(), Spy(), optimizer, num_steps=8, end_lr=1e-2)
    assert [pair[1] for pair in seen] == pytest.approx(result.lrs, rel=1e-12)
    assert [pair[0] / pair[1] for pair in seen] == pytest.approx([0.1] * 8, rel=1e-9)
    assert [group["lr"] for group in optimizer.param_groups] == [0.01, 0.1]


def test_accumulation_advances_the_lr_per_optimizer_step_not_per_micro_batch() -> None:
    model = make_classifier()
    optimizer = CountingSGD(model.parameters())
    data = CountingData(make_batches(count=5))
    result = find_lr(
        model, data, None, optimizer, num_steps=6, end_lr=1e-2, accumulation_steps=4,
        diverge_factor=math.inf,
    )  # fmt: skip
    assert data.drawn == 6 * 4
    assert optimizer.step_lrs == result.lrs
    assert len(optimizer.step_lrs) == 6


def test_batches_per_step_averages_several_optimizer_steps_at_one_lr() -> None:
    model = make_classifier()
    optimizer = CountingSGD(model.parameters())
    result = find_lr(
        model, make_batches(), None, optimizer, num_steps=5, end_lr=1e-3, batches_per_step=3,
        diverge_factor=math.inf,
    )  # fmt: skip
    assert len(optimizer.step_lrs) == 15
    assert optimizer.step_lrs == [lr for lr in result.lrs for _ in range(3)]


def test_recorded_loss_is_the_mean_over_batches_per_step() -> None:
    losses = iter([1.0, 3.0, 2.0, 6.0])

    def step_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        return model(batch[0]).sum() * 0 + next(losses)

    result = find_lr(
        make_classifier(), make_batches(), step_fn=step_fn, num_steps=2, batches_per_step=2,
        end_lr=1e-3, diverge_factor=math.inf,
    )  # fmt: skip
    assert result.losses == [2.0, 4.0]


def test_smoothed_losses_are_the_debiased_ema_of_the_raw_losses() -> None:
    events: list[StepEvent] = []
    result = find_lr(
        make_classifier(), make_batches(), num_steps=20, beta=0.9, callback=events.append
    )
    expected = debiased_ema(result.losses, 0.9)
    assert [e.smoothed_loss for e in events] == pytest.approx(expected.tolist(), rel=1e-12)
    assert result.smoothed_losses.tolist() == pytest.approx(expected.tolist(), rel=1e-12)
    assert result.with_beta(0.5).smoothed_losses.tolist() == pytest.approx(
        debiased_ema(result.losses, 0.5).tolist()
    )


def test_gradient_clipping_bounds_the_gradient_norm_at_each_step() -> None:
    model = make_classifier()
    norms: list[float] = []

    class NormSpy(torch.optim.SGD):
        def step(self, closure: Any = None) -> Any:  # type: ignore[override]
            grads = [p.grad for group in self.param_groups for p in group["params"]]
            norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
            return super().step(closure)

    find_lr(
        model, make_batches(), None, NormSpy(model.parameters(), lr=0.1), num_steps=6,
        max_grad_norm=1e-3, end_lr=1e-3,
    )  # fmt: skip
    assert len(norms) == 6
    assert max(norms) <= 1e-3 * (1 + 1e-5)


def test_divergence_stops_when_smoothed_loss_exceeds_factor_times_minimum() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = find_lr(
        model, make_batches(), None, optimizer, start_lr=1e-3, end_lr=1e4, num_steps=80
    )
    assert result.stop_reason is StopReason.DIVERGED
    smoothed = result.smoothed_losses
    assert smoothed[-1] > 4 * smoothed[:-1].min()
    assert all(smoothed[i] <= 4 * smoothed[: i + 1].min() for i in range(len(smoothed) - 1))
    assert "exceeded 4 x its minimum" in result.stop_detail


def test_nan_loss_at_the_first_step_is_a_result_not_a_crash() -> None:
    def step_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        return model(batch[0]).sum() * float("nan")

    result = find_lr(make_classifier(), make_batches(), step_fn=step_fn)
    assert result.stop_reason is StopReason.NON_FINITE
    assert result.num_steps == 1
    assert math.isnan(result.losses[0])
    assert not result.suggestion.ok


def test_inf_loss_stops_with_non_finite_reason() -> None:
    calls = {"n": 0}

    def step_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        calls["n"] += 1
        loss = F.cross_entropy(model(batch[0]), batch[1])
        return loss * float("inf") if calls["n"] == 7 else loss

    result = find_lr(make_classifier(), make_batches(), step_fn=step_fn)
    assert result.stop_reason is StopReason.NON_FINITE
    assert result.num_steps == 7
    assert result.losses[-1] == math.inf


def test_callback_receives_every_step_and_can_stop_the_sweep() -> None:
    events: list[StepEvent] = []

    def callback(event: StepEvent) -> bool:
        events.append(event)
        return event.step == 9

    result = find_lr(make_classifier(), make_batches(), num_steps=50, callback=callback)
    assert [e.step for e in events] == list(range(10))
    assert [e.lr for e in events] == result.lrs
    assert [e.loss for e in events] == result.losses
    assert result.stop_reason is StopReason.STOPPED
    assert events[-1].eta_s == pytest.approx(events[-1].elapsed_s / 10 * 40)


def test_steps_iterator_yields_events_and_finishes_with_a_result() -> None:
    finder = LRFinder(make_classifier(), make_batches(), num_steps=12, end_lr=1e-3)
    events = list(finder.steps())
    assert [e.step for e in events] == list(range(12))
    assert finder.result is not None
    assert finder.result.stop_reason is StopReason.COMPLETED


def test_given_optimizer_is_used_with_its_hyper_parameters() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    result = find_lr(model, make_batches(), None, optimizer, num_steps=5, end_lr=1e-3)
    assert result.metadata["optimizer"] == "SGD"
    assert result.metadata["optimizer_defaults"]["momentum"] == 0.9
    assert optimizer.param_groups[0]["lr"] == 0.1


def test_default_optimizer_is_adamw() -> None:
    finder = LRFinder(make_classifier(), make_batches())
    assert isinstance(finder.optimizer, torch.optim.AdamW)
    assert finder.owns_optimizer


def test_validation_loss_is_measured_on_a_limited_number_of_batches_after_each_step() -> None:
    val = CountingData(make_batches(seed=5, count=10))
    result = find_lr(
        make_classifier(), make_batches(), num_steps=8, end_lr=1e-2, val_data=val, val_batches=3
    )
    assert val.drawn == 3  # cached once, reused at every step
    assert result.val_losses is not None
    assert len(result.val_losses) == 8
    assert all(math.isfinite(v) for v in result.val_losses)
    assert result.curve.tolist() == pytest.approx(debiased_ema(result.val_losses, 0.98).tolist())


def test_validation_runs_in_eval_mode_and_training_in_train_mode() -> None:
    model = make_classifier()
    modes: list[tuple[bool, bool]] = []

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        modes.append((torch.is_grad_enabled(), model.training))
        return F.cross_entropy(output, target)

    model.eval()
    find_lr(
        model,
        make_batches(),
        loss_fn,
        num_steps=3,
        end_lr=1e-3,
        val_data=make_batches(),
        val_batches=1,
    )
    assert modes == [(True, True), (False, False)] * 3
    assert not model.training


def test_bfloat16_autocast_runs_on_cpu() -> None:
    dtypes: list[torch.dtype] = []

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dtypes.append(output.dtype)
        return F.cross_entropy(output.float(), target)

    result = find_lr(
        make_classifier(),
        make_batches(),
        loss_fn,
        num_steps=4,
        end_lr=1e-3,
        amp_dtype=torch.bfloat16,
    )
    assert set(dtypes) == {torch.bfloat16}
    assert result.settings["amp_dtype"] == "bfloat16"


def test_grad_scaler_skipped_steps_do_not_advance_the_sweep() -> None:
    """Steps whose gradients overflow are skipped by the GradScaler and retried at the same LR."""
    model = make_classifier()
    optimizer = CountingSGD(model.parameters())
    calls = {"n": 0}

    def step_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        calls["n"] += 1
        loss = F.cross_entropy(model(batch[0]), batch[1])
        if calls["n"] in (2, 3):  # finite loss, infinite gradients
            return loss + _infinite_gradient(model)
        return loss

    scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    result = find_lr(
        model,
        make_batches(),
        None,
        optimizer,
        num_steps=5,
        end_lr=1e-3,
        step_fn=step_fn,
        grad_scaler=scaler,
    )
    assert calls["n"] == 7  # two batches skipped, five steps taken
    assert len(optimizer.step_lrs) == 5
    assert optimizer.step_lrs == result.lrs
    assert result.num_steps == 5


def _infinite_gradient(model: torch.nn.Module) -> torch.Tensor:
    """A term that is zero in value but whose gradient is infinite (d sqrt(x)/dx at 0)."""
    return torch.sqrt(model[0].weight[0, 0] * 0.0)
