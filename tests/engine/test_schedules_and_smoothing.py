"""LR schedules and the debiased EMA, as pure functions."""

from __future__ import annotations

import itertools

import pytest
import torch

from lr_widget.curves.smoothing import DebiasedEMA, debiased_ema
from lr_widget.engine.schedules import apply_lr, group_lr_ratios, lr_at, lr_schedule


@pytest.mark.parametrize("mode", ["exp", "linear"])
@pytest.mark.parametrize(
    ("start", "end", "steps"), [(1e-7, 10.0, 100), (3e-4, 0.7, 2), (1e-3, 1e-2, 333)]
)
def test_schedule_hits_both_end_points_exactly(
    mode: str, start: float, end: float, steps: int
) -> None:
    lrs = lr_schedule(steps, start, end, mode)
    assert lrs[0] == start
    assert lrs[-1] == end
    assert len(lrs) == steps
    assert all(a < b for a, b in itertools.pairwise(lrs))


def test_linear_schedule_is_evenly_spaced() -> None:
    assert lr_schedule(5, 0.0 + 1e-3, 5e-3, "linear").tolist() == pytest.approx(
        [1e-3, 2e-3, 3e-3, 4e-3, 5e-3]
    )


def test_lr_at_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        lr_at(0, 10, 1e-3, 1.0, "step")
    with pytest.raises(ValueError, match=r"step must be in \[0, 9\], got 10"):
        lr_at(10, 10, 1e-3, 1.0)


def test_group_ratios_are_relative_to_the_largest_lr() -> None:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [a], "lr": 0.02}, {"params": [b], "lr": 0.2}])
    ratios = group_lr_ratios(optimizer)
    assert ratios == pytest.approx([0.1, 1.0])
    apply_lr(optimizer, 1.0, ratios)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.1, 1.0])


def test_apply_lr_fills_tensor_lrs_in_place() -> None:
    a = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([a], lr=torch.tensor(0.01))
    tensor = optimizer.param_groups[0]["lr"]
    apply_lr(optimizer, 0.5, [1.0])
    assert optimizer.param_groups[0]["lr"] is tensor
    assert float(tensor) == 0.5


def test_debiased_ema_matches_the_formula() -> None:
    losses = [4.0, 2.0, 3.0, 1.0]
    beta, average, expected = 0.7, 0.0, []
    for t, loss in enumerate(losses, start=1):
        average = beta * average + (1 - beta) * loss
        expected.append(average / (1 - beta**t))
    assert debiased_ema(losses, beta).tolist() == pytest.approx(expected, rel=1e-15)
    ema = DebiasedEMA(beta)
    assert [ema.update(loss) for loss in losses] == debiased_ema(losses, beta).tolist()


def test_zero_beta_is_no_smoothing() -> None:
    assert debiased_ema([3.0, 1.0, 2.0], 0.0).tolist() == [3.0, 1.0, 2.0]


def test_first_smoothed_value_is_the_first_loss() -> None:
    assert debiased_ema([5.0, 1.0], 0.98)[0] == pytest.approx(5.0)


def test_bad_beta_is_refused() -> None:
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\), got 1\.5"):
        debiased_ema([1.0], 1.5)
