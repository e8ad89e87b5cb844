"""The lag-free curve the rules read, the rules on it, the confirmation step and the offline
re-scoring of the quality benchmark."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmarks import rescore
from lr_widget.curves.smoothing import blow_up_cut, debiased_ema, lag_free
from lr_widget.diagnostics.confirm import confirm_lr
from lr_widget.results.confirmation import Confirmation, compare_probes
from lr_widget.results.range_test import RangeTestResult
from lr_widget.results.repeated import RepeatedRangeTest
from lr_widget.suggestions.registry import CURVE_READ, SCHEDULE_RULES, suggest

LRS = np.logspace(-7, 1, 100)  # find_lr's default schedule
LOG_LRS = np.log10(LRS)
TRUE_MINIMUM = 37  # index of the lowest noiseless loss


def valley_with_noise(seed: int = 0) -> np.ndarray:
    """A parabola in log LR lowest at LRS[TRUE_MINIMUM], noise, two outliers, a blow-up tail."""
    rng = np.random.default_rng(seed)
    centre = LOG_LRS[TRUE_MINIMUM]
    losses = 1.0 + 0.3 * (LOG_LRS - centre) ** 2 + rng.normal(0.0, 0.02, LRS.size)
    losses[[30, 44]] += 3.0  # two bad batches
    losses[70:] = np.linspace(6.0, 50.0, LRS.size - 70)  # the blow-up
    return np.asarray(losses, dtype=np.float64)


# -- the smoother -------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(5))
def test_lag_free_puts_the_minimum_within_one_step_of_the_true_one(seed: int) -> None:
    curve = lag_free(LRS, valley_with_noise(seed))
    assert abs(int(np.nanargmin(curve)) - TRUE_MINIMUM) <= 1


def test_the_ema_lags_the_minimum_where_the_lag_free_curve_does_not() -> None:
    losses = valley_with_noise()
    ema_minimum = int(np.argmin(debiased_ema(losses[:70], 0.98)))
    assert ema_minimum - TRUE_MINIMUM >= 5


def test_lag_free_is_exact_on_a_straight_line_and_nan_past_the_blow_up() -> None:
    line = 3.0 - 0.1 * LOG_LRS
    assert lag_free(LRS, line) == pytest.approx(line, abs=1e-9)
    curve = lag_free(LRS, valley_with_noise())
    assert np.isnan(curve[70:]).all()
    assert np.isfinite(curve[: TRUE_MINIMUM + 10]).all()


def test_blow_up_cut_keeps_everything_until_the_loss_is_back_above_its_start() -> None:
    assert blow_up_cut([2.0, 2.0, 2.0, 1.0, 0.5, 1.9]) == 6
    assert blow_up_cut([2.0, 2.0, 2.0, 1.0, 2.5, 9.0]) == 4
    assert blow_up_cut([2.0, math.inf, 1.0]) == 1
    assert blow_up_cut([]) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"width": 0.0}, "width must be a positive"), ({"iterations": -1}, "iterations must be")],
)
def test_lag_free_refuses_bad_arguments(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lag_free(LRS, valley_with_noise(), **kwargs)  # type: ignore[arg-type]


def test_lag_free_refuses_mismatched_or_decreasing_lrs() -> None:
    with pytest.raises(ValueError, match="one length"):
        lag_free(LRS, np.ones(3))
    with pytest.raises(ValueError, match="increasing"):
        lag_free(LRS[::-1], np.ones(LRS.size))


# -- rules on the lag-free curve ----------------------------------------------------------------
def test_minimum_rules_read_the_lag_free_minimum() -> None:
    curve = lag_free(LRS, valley_with_noise())
    lowest = LRS[int(np.nanargmin(curve))]
    assert suggest(LRS, curve, "minimum").lr == pytest.approx(lowest / 10)
    assert suggest(LRS, curve, "minimum_third").lr == pytest.approx(lowest / 3)
    assert suggest(LRS, curve, "minimum_half").lr == pytest.approx(lowest / 2)


def test_steep_minimum_is_the_geometric_mean_of_steep_and_minimum() -> None:
    losses = 2.0 - np.tanh(LOG_LRS + 3.0) + 4.0 * np.maximum(0.0, LOG_LRS + 1.0) ** 2
    steep, lowest = suggest(LRS, losses, "steep"), suggest(LRS, losses, "minimum")
    combined = suggest(LRS, losses, "steep_minimum")
    assert steep.lr == pytest.approx(1e-3, rel=0.1)  # the tanh's steepest point
    assert combined.lr == pytest.approx(math.sqrt(steep.lr * lowest.lr))  # type: ignore[operator]


def test_results_suggest_from_the_lag_free_curve_of_the_raw_losses() -> None:
    result = RangeTestResult(lrs=list(LRS), losses=list(valley_with_noise()))
    assert result.raw_curve.tolist() == result.losses
    assert np.array_equal(result.lag_free_curve, lag_free(LRS, result.losses), equal_nan=True)
    assert result.suggestion == suggest(LRS, result.lag_free_curve)
    assert result.with_beta(0.5).suggestion == result.suggestion
    assert CURVE_READ in result.summary()
    for schedule, rule in SCHEDULE_RULES.items():
        assert result.suggestion_for(schedule) == result.suggest(rule)
    with pytest.raises(ValueError, match="schedule must be one of"):
        result.suggestion_for("cosine")


def test_repeated_median_curve_suggestion_reads_the_lag_free_median() -> None:
    runs = [RangeTestResult(lrs=list(LRS), losses=list(valley_with_noise(s))) for s in range(3)]
    repeated = RepeatedRangeTest(runs)
    median = np.median([run.raw_curve for run in runs], axis=0)
    assert repeated.raw_curve == pytest.approx(median)
    # the curve it reads is the median of the runs' fits, the bold centre of the band
    fits = np.median([run.lag_free_curve for run in runs], axis=0)
    assert np.array_equal(repeated.lag_free_curve, fits, equal_nan=True)
    assert repeated.median_curve_suggestion() == suggest(LRS, fits)


# -- confirmation -------------------------------------------------------------------------------
def _regression() -> tuple[torch.nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    inputs = torch.randn(256, 4)
    targets = inputs @ torch.tensor([[1.0], [-2.0], [0.5], [1.5]])
    return model, [(inputs[i : i + 32], targets[i : i + 32]) for i in range(0, 256, 32)]


def test_confirm_restores_model_and_optimizer_exactly() -> None:
    model, data = _regression()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model(data[0][0]).pow(2).mean().backward()
    optimizer.step()  # some optimizer state to restore
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state_before = optimizer.state_dict()
    exp_avg = [s["exp_avg"].clone() for s in optimizer.state.values()]
    confirm_lr(model, data, 1e-2, torch.nn.functional.mse_loss, optimizer, steps=10)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert optimizer.param_groups[0]["lr"] == 0.01
    assert optimizer.state_dict()["param_groups"] == state_before["param_groups"]
    restored = [s["exp_avg"] for s in optimizer.state.values()]
    assert all(torch.equal(a, b) for a, b in zip(exp_avg, restored, strict=True))


def test_confirm_finds_the_known_winner_among_far_apart_lrs() -> None:
    model, data = _regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    found = confirm_lr(
        model, data, 1e-2, torch.nn.functional.mse_loss, optimizer,
        factors=(1e-3, 1.0, 1e4), steps=40,
    )  # fmt: skip
    assert isinstance(found, Confirmation)
    assert found.winner == pytest.approx(1e-2)  # 1e-5 barely moves; 100 diverges
    assert found.decisive
    assert found.margin_over_noise >= 2
    assert found.probes[-1].diverged
    assert found.steps <= 3 * 40
    assert found.to_dict()["winner"] == found.winner


def test_compare_probes_calls_noise_indecisive() -> None:
    rng = np.random.default_rng(0)
    noisy = [list(1.0 + rng.normal(0, 0.1, 30)) for _ in range(3)]
    found = compare_probes([1e-3, 3e-3, 1e-2], noisy)
    assert not found.decisive
    assert "within the noise" in found.reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr must be"),
        ({"lr": 1e-2, "steps": 2}, "steps must be an integer >= 4"),
        ({"lr": 1e-2, "factors": (1.0,)}, "at least two distinct"),
        ({"lr": 1e-2, "factors": (1.0, -3.0)}, "factors"),
        ({"lr": 1e-2, "tail": 1.5}, r"tail must be in \(0, 1\]"),
    ],
)
def test_confirm_refuses_bad_input_before_training(kwargs: dict[str, object], message: str) -> None:
    model, data = _regression()
    before = [p.clone() for p in model.parameters()]
    with pytest.raises(ValueError, match=message):
        confirm_lr(model, data, loss_fn=torch.nn.functional.mse_loss, **kwargs)  # type: ignore[arg-type]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


# -- offline re-scoring -------------------------------------------------------------------------
def test_interpolated_score_is_linear_in_log_lr_and_clamped() -> None:
    grid, scores = [1e-3, 1e-2, 1e-1], [3.0, 1.0, 2.0]
    assert rescore.interpolated_score(grid, scores, 1e-2) == 1.0
    assert rescore.interpolated_score(grid, scores, 10**-1.5) == pytest.approx(1.5)
    assert rescore.interpolated_score(grid, scores, 1e-6) == 3.0


def test_leave_one_out_picks_on_the_other_tasks() -> None:
    scored = {
        "t1": {"regrets": {"a": 0.0, "b": 0.5}},
        "t2": {"regrets": {"a": 0.0, "b": 0.5}},
        "t3": {"regrets": {"a": 1.0, "b": 0.0}},
    }
    found = rescore.leave_one_out(scored, ["t1", "t2", "t3"], lambda name: True)
    # Leaving t1 out, b is better on t2 and t3 together; leaving t3 out, a is.
    assert found["chosen_per_fold"] == {"t1": "b", "t2": "b", "t3": "a"}
    assert found["pick"] == "a"  # on all three
    assert found["cv_geo_mean"] == pytest.approx((1.5 * 1.5 * 2.0) ** (1 / 3))
