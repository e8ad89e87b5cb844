"""Repeated range tests: identical starts, seeded runs, the band is the runs' spread, bumps are
judged against it, and the whole result survives strict JSON."""

from __future__ import annotations

import copy
import json
import math
import random
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lr_widget.engine.recording import StepEvent
from lr_widget.engine.repeated_sweep import RepeatedSweep, RepeatStepEvent
from lr_widget.find import find_lr
from lr_widget.results.range_test import RangeTestResult, StopReason
from lr_widget.results.repeated import RepeatedRangeTest
from lr_widget.results.spread import MIN_RUNS_TO_JUDGE, NoiseBand, SuggestionSpread
from lr_widget.suggestions.curve import Suggestion
from lr_widget.suggestions.registry import DEFAULT_RULE
from tests.helpers import (
    assert_restored,
    assert_trees_equal,
    capture,
    make_batches,
    make_classifier,
    warm_optimizer,
)


def shuffled_loader(seed: int = 0) -> torch.utils.data.DataLoader[Any]:
    """A shuffling DataLoader whose batches carry their sample indices as a third element."""
    x, y = map(torch.cat, zip(*make_batches(seed=seed), strict=True))
    dataset = torch.utils.data.TensorDataset(x, y, torch.arange(len(y)))
    return torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=True)


def indexed_loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
    x, y, _ = batch
    return F.cross_entropy(model(x), y)


def synthetic_runs() -> list[RangeTestResult]:
    """Runs of different lengths on one grid, one ending in a NaN, unsmoothed (beta=0)."""
    lrs = np.logspace(-4, 0, 12).tolist()
    generator = np.random.default_rng(0)
    runs = []
    for length in (12, 9, 12, 5):
        losses = (
            2.0 - np.linspace(0, 1, length) + 0.1 * generator.standard_normal(length)
        ).tolist()
        runs.append(RangeTestResult(lrs=lrs[:length], losses=losses, beta=0.0))
    runs[1].losses[-1] = math.nan
    return runs


def by_hand(runs: list[RangeTestResult], step: int, smoothed: bool = False) -> list[float]:
    """The lag-free fits' values at ``step`` (the moving averages' with ``smoothed``) of the runs
    that reached it with a finite value."""
    curves = [run.curve if smoothed else run.lag_free_curve for run in runs]
    reached = [curve for run, curve in zip(runs, curves, strict=True) if run.num_steps > step]
    values = [float(curve[step]) for curve in reached]
    return [value for value in values if math.isfinite(value)]


# -- the band -----------------------------------------------------------------------------------
def assert_band_is_the_spread_of_the_runs(result: RepeatedRangeTest) -> None:
    for smoothed, band in ((False, result.band()), (True, result.smoothed_band())):
        assert_band_is_the_spread(result, band, smoothed)


def assert_band_is_the_spread(result: RepeatedRangeTest, band: NoiseBand, smoothed: bool) -> None:
    assert band.lrs.tolist() == max(result.runs, key=lambda run: run.num_steps).lrs
    for step in range(band.lrs.size):
        values = by_hand(result.runs, step, smoothed)
        assert band.count[step] == len(values)
        if not values or (not smoothed and 2 * len(values) < len(result.runs)):
            assert math.isnan(band.median[step])
            continue
        assert band.median[step] == pytest.approx(statistics.median(values), rel=1e-12)
        assert band.low[step] == min(values)
        assert band.high[step] == max(values)
        assert band.width[step] == max(values) - min(values)


def test_band_is_the_per_step_spread_of_runs_of_different_lengths() -> None:
    result = RepeatedRangeTest(synthetic_runs())
    assert_band_is_the_spread_of_the_runs(result)
    assert result.count.tolist() == [4] * 5 + [3] * 3 + [2] + [2] * 3  # run 1 ends in NaN
    assert result.low.tolist() == result.band().low.tolist()


def test_the_band_ends_where_fewer_than_half_the_fits_remain() -> None:
    """Past the first blow-ups the median of the last survivors is no median of the runs: the
    band (and the bold curve, its median) stops where fewer than half the fits reach."""
    lrs = np.logspace(-4, 0, 30).tolist()
    runs = [
        RangeTestResult(lrs=lrs[:length], losses=np.linspace(2.0, 1.0, 30)[:length].tolist())
        for length in (30, 30, 25, 20, 15)
    ]
    result = RepeatedRangeTest(runs)
    band = result.band()
    assert band.count.tolist() == [5] * 15 + [4] * 5 + [3] * 5 + [2] * 5
    assert np.isfinite(band.median[:25]).all()
    assert np.isnan(band.median[25:]).all()
    assert np.isnan(band.high[25:]).all()
    np.testing.assert_array_equal(result.lag_free_curve, band.median)
    assert np.isfinite(result.smoothed_band().median).all()  # the moving averages go on


def test_no_rise_is_read_where_fewer_fits_remain_than_a_judgement_needs() -> None:
    """Four runs, two ending early: the other two's climb at the end is drawn (half the runs
    reach it) but not read as a rise of the runs, which needs three fits at both ends."""
    lrs = np.logspace(-4, 0, 30).tolist()
    falling = np.linspace(2.0, 1.0, 30)
    climbing = falling + np.where(np.arange(30) >= 20, 0.05 * (np.arange(30) - 19), 0.0)
    runs = [
        RangeTestResult(lrs=lrs[:length], losses=curve[:length].tolist())
        for length, curve in ((30, climbing), (30, climbing), (20, falling), (20, falling))
    ]
    result = RepeatedRangeTest(runs)
    assert np.isfinite(result.median[20:]).all()  # two of four: the band is drawn there
    assert result.bump_between(lrs[18], lrs[-1]) is None
    assert all(bump.runs >= MIN_RUNS_TO_JUDGE for bump in result.bumps())


def test_band_of_a_real_repeated_sweep_is_the_spread_of_its_runs() -> None:
    result = find_lr(
        make_classifier(),
        shuffled_loader(),
        step_fn=indexed_loss,
        repeats=4,
        start_lr=1e-3,
        end_lr=30.0,
        num_steps=40,
        beta=0.7,
    )
    assert len(result.runs) == 4
    assert_band_is_the_spread_of_the_runs(result)
    assert result.band().curves.shape == (4, result.lrs.size)


def test_a_single_run_is_a_band_of_zero_width() -> None:
    run = synthetic_runs()[0]
    band = NoiseBand.from_result(run)
    assert band.median.tolist() == run.curve.tolist()
    assert band.width.tolist() == [0.0] * run.num_steps
    assert band.count.tolist() == [1] * run.num_steps


def test_inside_tells_which_points_of_a_curve_lie_within_the_band() -> None:
    band = NoiseBand.from_curves([1e-3, 1e-2, 1e-1], [[1.0, 1.0, 1.0], [2.0, 2.0]])
    assert band.inside([1.5, 2.5, 1.0]).tolist() == [True, False, True]
    assert band.inside([1.5]).tolist() == [True, False, False]


def test_runs_on_different_schedules_are_refused() -> None:
    a = RangeTestResult(lrs=[1e-3, 1e-2, 1e-1], losses=[1.0, 0.5, 0.7])
    b = RangeTestResult(lrs=[1e-3, 2e-2], losses=[1.0, 0.5])
    with pytest.raises(ValueError, match="share one LR schedule"):
        RepeatedRangeTest([a, b])


# -- running ------------------------------------------------------------------------------------
def test_every_run_starts_from_identical_weights_and_optimizer_state() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    warm_optimizer(model, optimizer)
    original = (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))
    starts: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def recording_loss(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        if recording["next_is_start"]:
            starts.append(
                (copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict()))
            )
            recording["next_is_start"] = False
        return indexed_loss(model, batch)

    def on_step(event: RepeatStepEvent) -> None:
        recording["next_is_start"] = event.step == event.num_steps - 1

    recording = {"next_is_start": True}
    result = find_lr(
        model,
        shuffled_loader(),
        None,
        optimizer,
        step_fn=recording_loss,
        repeats=3,
        end_lr=1e-1,
        num_steps=10,
        callback=on_step,
    )
    assert [run.stop_reason for run in result.runs] == [StopReason.COMPLETED] * 3
    assert len(starts) == 3
    for weights, optimizer_state in starts:
        assert_trees_equal(original[0], weights, "model")
        # param_groups differ only in "lr", which the sweep sets before the first step
        assert_trees_equal(original[1]["state"], optimizer_state["state"], "optimizer")
    assert result.runs[0].losses != result.runs[1].losses  # the runs did differ


def test_model_optimizer_and_caller_rng_are_restored_after_all_runs() -> None:
    model = make_classifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    warm_optimizer(model, optimizer)
    torch.manual_seed(1234)
    np.random.seed(1234)
    random.seed(1234)
    before = capture(model, optimizer)
    find_lr(
        model,
        shuffled_loader(),
        None,
        optimizer,
        step_fn=indexed_loss,
        repeats=3,
        num_steps=8,
        end_lr=1e-2,
    )
    assert_restored(before, model, optimizer)


def test_run_i_is_the_range_test_seeded_seed_plus_i() -> None:
    result = find_lr(
        make_classifier(),
        shuffled_loader(),
        step_fn=indexed_loss,
        repeats=3,
        seed=7,
        num_steps=12,
        end_lr=1.0,
    )
    assert result.seeds == [7, 8, 9]
    for index, seed in enumerate([7, 8, 9]):
        model = make_classifier()  # (seeds torch itself, so build it before seeding)
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        alone = find_lr(model, shuffled_loader(), step_fn=indexed_loss, num_steps=12, end_lr=1.0)
        assert result.runs[index].losses == alone.losses


def test_different_seeds_give_a_different_data_order() -> None:
    first_batches: list[list[int]] = []

    def record_order(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        first_batches.append(batch[2].tolist())
        return indexed_loss(model, batch)

    def on_step(event: RepeatStepEvent) -> None:
        del first_batches[event.run + 1 :]  # keep the first batch of each run only

    find_lr(
        make_classifier(),
        shuffled_loader(),
        step_fn=record_order,
        repeats=4,
        num_steps=5,
        end_lr=1e-2,
        callback=on_step,
    )
    assert len(first_batches) == 4
    assert len({tuple(order) for order in first_batches}) == 4


def test_runs_generator_grows_the_result_and_hands_back_the_callers_rng_at_each_yield() -> None:
    sweep = RepeatedSweep(
        make_classifier(),
        shuffled_loader(),
        step_fn=indexed_loss,
        repeats=3,
        num_steps=6,
        end_lr=1e-2,
    )
    torch.manual_seed(5)
    callers_state = torch.get_rng_state().clone()
    sizes = []
    for run in sweep.runs():
        assert torch.equal(torch.get_rng_state(), callers_state)
        sizes.append(len(sweep.result.runs))
        assert sweep.result.runs[-1] is run
        torch.rand(3)  # the caller draws between runs: the sweep must not undo it
        callers_state = torch.get_rng_state().clone()
    assert sizes == [1, 2, 3]
    assert torch.equal(torch.get_rng_state(), callers_state)


def test_the_caller_rng_is_restored_when_a_run_raises() -> None:
    class BoomError(RuntimeError):
        pass

    calls = {"n": 0}

    def failing(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > 8:
            raise BoomError("user code failed in run 2")
        return indexed_loss(model, batch)

    sweep = RepeatedSweep(
        make_classifier(), shuffled_loader(), step_fn=failing, repeats=3, num_steps=6, end_lr=1e-2
    )
    torch.manual_seed(11)
    before = torch.get_rng_state().clone()
    with pytest.raises(BoomError):
        sweep.run()
    assert torch.equal(torch.get_rng_state(), before)
    assert len(sweep.result.runs) == 1  # the completed run is kept


def test_a_callback_stop_keeps_the_stopped_run_and_starts_no_more() -> None:
    events: list[RepeatStepEvent] = []

    def stop_in_second_run(event: RepeatStepEvent) -> bool:
        events.append(event)
        return event.run == 1 and event.step == 2

    result = find_lr(
        make_classifier(),
        shuffled_loader(),
        step_fn=indexed_loss,
        repeats=5,
        num_steps=6,
        end_lr=1e-2,
        callback=stop_in_second_run,
    )
    assert [run.stop_reason for run in result.runs] == [StopReason.COMPLETED, StopReason.STOPPED]
    assert result.repeats == 5
    assert "of 5 planned" in repr(result)
    assert isinstance(events[0], StepEvent)
    assert events[-1].sweep_fraction_done == pytest.approx((1 + 3 / 6) / 5)


def test_stop_from_outside_ends_the_sweep() -> None:
    sweep = RepeatedSweep(
        make_classifier(), shuffled_loader(), step_fn=indexed_loss, repeats=4, num_steps=6
    )
    result = sweep.run(on_run_done=lambda partial: sweep.stop())
    assert len(result.runs) == 1


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"repeats": 0}, ValueError, "repeats"),
        ({"repeats": 2.0}, TypeError, "repeats"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 2**32 - 1, "repeats": 2}, ValueError, "seed"),
        ({"num_step": 5}, TypeError, "num_step"),
    ],
)
def test_bad_arguments_are_rejected_before_any_run(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        RepeatedSweep(make_classifier(), make_batches(), **options)


def test_data_in_the_same_order_every_run_is_warned_about() -> None:
    x, y, _ = shuffled_loader().dataset.tensors  # type: ignore[attr-defined]
    in_order = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    for data in (make_batches(), tuple(make_batches()), in_order):
        with pytest.warns(UserWarning, match="same order in every run"):
            RepeatedSweep(make_classifier(), data, repeats=2)
    RepeatedSweep(make_classifier(), shuffled_loader(), repeats=2)  # warnings are errors here


# -- suggestions --------------------------------------------------------------------------------
def picks(*lrs: float | None) -> tuple[Suggestion, ...]:
    return tuple(
        Suggestion("valley", None, None, None, "no")
        if lr is None
        else Suggestion("valley", lr, 0, 1.0, "")
        for lr in lrs
    )


def test_spread_describes_median_and_range_of_the_picks() -> None:
    assert SuggestionSpread("valley", picks(2e-3, 5e-3, 3e-3)).describe() == (
        "valley 3.0e-03, 2.0e-03 to 5.0e-03 (2.5x) over 3 runs"
    )
    assert SuggestionSpread("valley", picks(1e-3, None, 1e-1)).describe() == (
        "valley 1.0e-02, 1.0e-03 to 1.0e-01 (1e+02x) over 2 of 3 runs"
    )
    assert SuggestionSpread("valley", picks(None, None)).describe() == (
        "valley: no answer in any of 2 runs"
    )


def test_per_rule_spread_and_robust_pick_come_from_the_runs() -> None:
    result = find_lr(
        make_classifier(),
        shuffled_loader(),
        step_fn=indexed_loss,
        repeats=5,
        num_steps=60,
        start_lr=1e-4,
        end_lr=10.0,
        beta=0.8,
    )
    for rule, spread in result.spreads().items():
        assert spread.suggestions == tuple(run.suggest(rule) for run in result.runs)
        found = [lr for lr in (run.suggest(rule).lr for run in result.runs) if lr is not None]
        if not found:
            assert not result.suggest(rule).ok
            continue
        geometric_median = 10 ** statistics.median(math.log10(lr) for lr in found)
        robust = result.suggest(rule)
        assert robust.lr == pytest.approx(geometric_median, rel=1e-12)
        assert spread.low_lr == min(found)
        assert spread.high_lr == max(found)
        assert robust.index is not None
        nearest = int(np.argmin(np.abs(np.log10(result.lrs) - math.log10(geometric_median))))
        assert robust.index == nearest
        fit = result.lag_free_curve  # marked on the bold curve, the fit, where it is defined
        marked = fit[nearest] if np.isfinite(fit[nearest]) else result.median[nearest]
        assert robust.loss == marked
        assert spread.describe() in robust.reason
    assert result.suggestion == result.suggest(DEFAULT_RULE)
    assert result.suggested_lr == result.suggestion.lr


# -- is that bump real? --------------------------------------------------------------------------
def bumpy_runs(height: float, noise: float, runs: int = 5) -> RepeatedRangeTest:
    """Falling curves with a bump of ``height`` between steps 20 and 30 and per-step noise."""
    lrs = np.logspace(-5, 0, 60)
    generator = np.random.default_rng(42)
    base = 3.0 - np.linspace(0.0, 2.0, 60)
    bump = height * np.clip(1.0 - np.abs(np.arange(60) - 30) / 10.0, 0.0, None)
    results = []
    for _ in range(runs):
        losses = base + bump + noise * generator.standard_normal(60)
        results.append(RangeTestResult(lrs=lrs.tolist(), losses=losses.tolist(), beta=0.0))
    return RepeatedRangeTest(results)


def test_a_bump_larger_than_the_band_is_real() -> None:
    result = bumpy_runs(height=1.0, noise=0.02)
    bump = result.bump_between(result.lrs[18], result.lrs[34])
    assert bump is not None
    assert bump.significant
    assert bump.gap == pytest.approx(result.low[bump.peak_index] - result.high[bump.foot_index])
    assert bump.runs == 5
    assert bump.chance == 1 / 252
    assert "real" in bump.describe()
    assert "1 in 252 by chance" in bump.describe()
    assert any(found.significant and 20 <= found.peak_index <= 32 for found in result.bumps())


def test_a_bump_within_the_band_is_noise() -> None:
    result = bumpy_runs(height=0.5, noise=0.3)
    bump = result.bump_between(result.lrs[18], result.lrs[34])
    assert bump is not None
    assert not bump.significant
    assert bump.rise > 0
    assert "within noise" in bump.describe()
    assert not any(found.significant for found in result.bumps())


@pytest.mark.parametrize("runs", [1, 2])
def test_fewer_than_three_runs_are_too_few_to_judge_a_bump(runs: int) -> None:
    result = bumpy_runs(height=1.0, noise=0.02, runs=runs)
    bump = result.bump_between(result.lrs[18], result.lrs[34])
    assert bump is not None
    assert bump.gap > 0  # apart, but with 2 runs that happens 1 time in 6 by chance
    assert not bump.significant
    assert "too few to judge" in bump.describe()


def test_no_bump_where_the_median_only_falls() -> None:
    result = bumpy_runs(height=0.0, noise=0.0)
    assert result.bump_between(result.lrs[0], result.lrs[10]) is None
    assert result.bumps() == []


# -- serialisation and display ------------------------------------------------------------------
def test_repeated_result_survives_strict_json_losslessly(tmp_path: Path) -> None:
    result = find_lr(
        make_classifier(),
        shuffled_loader(),
        step_fn=indexed_loss,
        repeats=3,
        num_steps=40,
        start_lr=1e-3,
        end_lr=100.0,
        seed=4,
    )
    result.runs[0].losses[-1] = math.nan  # non-finite values must survive too

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    data = json.loads(result.to_json(), parse_constant=refuse)
    assert data["format"] == "lr_widget.repeated_range_test"
    assert data["runs"][0]["format"] == "lr_widget.range_test"
    loaded = RepeatedRangeTest.load(result.save(tmp_path / "repeats.json"))
    assert loaded.to_dict() == result.to_dict()
    assert loaded.seeds == [4, 5, 6]
    np.testing.assert_array_equal(loaded.median, result.median)
    assert loaded.suggestion == result.suggestion


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"format": "lr_widget.range_test"}, "not an lr_widget repeated"),
        ({"format": "lr_widget.repeated_range_test", "version": 99, "runs": []}, "version"),
        ({"format": "lr_widget.repeated_range_test", "version": 1, "runs": {}}, "runs"),
        (
            {"format": "lr_widget.repeated_range_test", "version": 1, "runs": [], "seeds": ["0"]},
            "seeds",
        ),
    ],
)
def test_malformed_documents_are_rejected(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RepeatedRangeTest.from_dict(document)


def test_summary_names_the_runs_each_rules_spread_and_the_robust_pick() -> None:
    result = bumpy_runs(height=1.0, noise=0.02)
    summary = result.summary()
    assert summary.splitlines()[0] == repr(result)
    assert "RepeatedRangeTest(5 runs" in summary
    for spread in result.spreads().values():
        assert spread.describe() in summary
    assert "robust pick" in summary
    assert "real" in summary
    assert repr(RepeatedRangeTest()) == "RepeatedRangeTest(0 runs)"


def test_with_beta_resmooths_every_run() -> None:
    result = RepeatedRangeTest(synthetic_runs())
    smoother = result.with_beta(0.9)
    assert [run.beta for run in smoother.runs] == [0.9] * 4
    assert smoother.smoothed_band().median.tolist() != result.smoothed_band().median.tolist()
    # the band is of the fits, which read the raw losses: the smoothing does not move it
    assert np.array_equal(smoother.median, result.median, equal_nan=True)
