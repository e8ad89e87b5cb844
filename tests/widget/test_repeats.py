"""Repeated sweeps in the widget: the noise band, its growth run by run, the spread of the picks,
and which rises are real."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lr_widget.plotting.style import median_fit_label
from lr_widget.results.range_test import RangeTestResult, StopReason
from lr_widget.results.repeated import RepeatedRangeTest
from lr_widget.suggestions.registry import DEFAULT_RULE
from lr_widget.widget import LRWidget
from lr_widget.widget.overlays import BUMP_TEXT
from tests.helpers import assert_restored, capture, warm_optimizer

from .frontend import click, drawn, main_curve, move
from .scripted import ScriptedStep, Setup, shuffled_loader

REPEATS, STEPS = 3, 20


def _repeated_widget(setup: Setup, step: ScriptedStep | None = None, **options: Any) -> LRWidget:
    return setup.widget(step, data=shuffled_loader(), repeats=REPEATS, num_steps=STEPS, **options)


def test_the_drawn_band_is_the_per_step_spread_of_the_runs(setup: Setup) -> None:
    w = _repeated_widget(setup)
    w.run()
    result = w.wait()

    assert isinstance(result, RepeatedRangeTest)
    assert result is w.result
    assert len(result.runs) == REPEATS
    band = result.band()
    assert band.count.tolist() == [REPEATS] * STEPS
    fill, median = w.plot.band.fill, w.plot.band.median
    assert fill.fill == "between"
    assert fill.visible
    np.testing.assert_array_equal(drawn(fill.x), band.lrs)
    np.testing.assert_array_equal(drawn(fill.y), np.vstack([band.low, band.high]))
    np.testing.assert_array_equal(drawn(median.y), band.median)
    assert median.labels == [median_fit_label(REPEATS)]
    assert (band.high > band.low).any()  # the runs differ: the band has a width to check
    # the band is of the curves the rules read, the runs' fits; the bold median is the curve
    for run, curve in zip(result.runs, band.curves, strict=True):
        np.testing.assert_array_equal(curve, run.lag_free_curve)
    np.testing.assert_array_equal(result.lag_free_curve, band.median)
    # the lagging moving averages' median is drawn faded under it
    smoothed = w.plot.band.smoothed
    assert smoothed.visible
    assert smoothed.line_style == "dashed"
    np.testing.assert_allclose(drawn(smoothed.y), result.smoothed_band().median)
    # After the sweep the median fit is the curve: hover points on it, single-run lines empty.
    fit = main_curve(band.median, result.smoothed_band().median)
    np.testing.assert_allclose(drawn(w.plot.hover_points.y), fit)
    assert drawn(w.plot.loss_line.y).size == 0
    assert not w.plot.fit_line.visible  # the band's median is the one bold line


def test_the_band_grows_as_runs_complete(setup: Setup) -> None:
    step = ScriptedStep(hold_at=STEPS + 5)  # step 5 of the second run
    w = _repeated_widget(setup, step, update_interval_s=0)
    drawn_labels: list[str] = []
    w.plot.band.median.observe(lambda change: drawn_labels.append(change["new"][0]), "labels")
    w.run()
    step.wait_until_held()

    assert w.plot.band.runs == 1  # the first run's band is drawn while the second one runs
    assert len(w.result.runs) == 1  # type: ignore[union-attr]
    assert drawn(w.plot.loss_line.y).size == 5  # the live run is drawn on top, as usual
    assert w.controls.progress_text.value.startswith(f"run 2/{REPEATS} · step 5/{STEPS} · ")
    step.release()
    w.wait()

    assert drawn_labels == [median_fit_label(runs) for runs in (1, 2, REPEATS)]
    assert w.plot.band.runs == REPEATS


def test_the_model_and_optimizer_are_restored_after_the_runs(setup: Setup) -> None:
    warm_optimizer(setup.model, setup.optimizer)
    before = capture(setup.model, setup.optimizer)
    w = _repeated_widget(setup)
    w.run()
    w.wait()
    assert_restored(before, setup.model, setup.optimizer)


def test_stop_ends_the_current_run_and_starts_no_more(setup: Setup) -> None:
    before = capture(setup.model, setup.optimizer)
    step = ScriptedStep(hold_at=STEPS + 5)
    w = _repeated_widget(setup, step)
    w.run()
    step.wait_until_held()
    click(w.controls.stop_button)
    step.release()
    result = w.wait()

    assert isinstance(result, RepeatedRangeTest)
    assert [run.stop_reason for run in result.runs] == [StopReason.COMPLETED, StopReason.STOPPED]
    assert step.calls == STEPS + 6  # no third run
    assert w.controls.status.value.startswith(f"stopped: 2 of {REPEATS} runs")
    assert w.controls.progress_text.value.startswith("stopped: 2 runs, ")
    assert_restored(before, setup.model, setup.optimizer)


def test_each_suggestion_shows_its_spread_across_the_runs(setup: Setup) -> None:
    w = _repeated_widget(setup)
    w.run()
    result = w.wait()
    assert isinstance(result, RepeatedRangeTest)

    robust = result.suggestion
    assert robust.lr is not None
    assert w.suggestions[DEFAULT_RULE] == robust  # the default pick is the robust one
    assert w.spreads == result.spreads()
    markup = w.controls.spread_label.value
    lines = [line for line in re.split(r"<[^>]+>", markup) if line]
    assert lines[0] == result.spread(DEFAULT_RULE).describe()  # the default rule first, in bold
    assert f"<b>{lines[0]}</b>" in markup
    assert w.controls.spread_label.layout.display is None  # shown
    assert [rule for rule, bar in w.plot.spread_bars.bars.items() if bar.visible] == [DEFAULT_RULE]
    w.controls.all_rules.value = True  # every rule's bar
    for rule, button in w.controls.suggestion_buttons.items():
        spread = result.spread(rule)
        assert spread.describe() in button.tooltip
        assert any(spread.describe() in line for line in lines)
        bar = w.plot.spread_bars.bars[rule]
        if spread.low_lr is None:
            assert not bar.visible
            continue
        assert bar.visible
        assert drawn(bar.x).tolist() == [spread.low_lr, spread.high_lr]
        assert drawn(bar.y).tolist() == [result.suggest(rule).loss] * 2
    click(w.controls.suggestion_buttons[DEFAULT_RULE])
    assert w.lr == robust.lr


def _bumpy(rise: float, seed: int = 0) -> RepeatedRangeTest:
    """Five runs of one curve that falls by 1e-3 and then rises by ``rise`` up to 3e-2 (a rise
    wide enough for the lag-free fits to keep), plus small per-run noise."""
    lrs = np.logspace(-5, -1, 41)
    rng = np.random.default_rng(seed)
    base = 2.0 - np.tanh(2 * (np.log10(lrs) + 4.0))
    base += rise * np.clip((np.log10(lrs) + 3.0) / 1.5, 0.0, 1.0)
    runs = [
        RangeTestResult(
            lrs=lrs.tolist(), losses=(base + 0.02 * rng.standard_normal(lrs.size)).tolist(), beta=0
        )
        for _ in range(5)
    ]
    return RepeatedRangeTest(runs, repeats=5)


def test_a_rise_outside_the_band_is_marked_real_and_noise_is_not() -> None:
    result = _bumpy(rise=0.6)
    real = [bump for bump in result.bumps() if bump.significant]
    assert len(real) == 1
    noise = [bump for bump in _bumpy(rise=0.0).bumps() if not bump.significant]
    assert noise  # the flat curve's wiggle is a rise too, within the band

    w = LRWidget.from_result(result)
    marks = w.plot.band
    assert marks.bump_points.visible
    assert drawn(marks.bump_points.x).tolist() == [real[0].peak_lr]
    assert drawn(marks.bump_points.y).tolist() == [result.median[real[0].peak_index]]
    assert list(marks.bump_labels.text) == [BUMP_TEXT]
    assert real[0].describe() in w.controls.spread_label.value
    w.close()

    flat = LRWidget.from_result(_bumpy(rise=0.0))
    assert not any(bump.significant for bump in flat.result.bumps())  # type: ignore[union-attr]
    assert noise[0].describe() not in flat.controls.spread_label.value
    assert not flat.plot.band.bump_points.visible
    assert not flat.plot.band.bump_labels.visible
    flat.close()


@pytest.mark.parametrize("from_path", [False, True])
def test_a_saved_repeated_result_shows_its_band(tmp_path: Path, from_path: bool) -> None:
    saved = _bumpy(rise=0.6)
    source = saved.save(tmp_path / "repeated.json") if from_path else saved
    w = LRWidget.from_result(source)

    assert isinstance(w.result, RepeatedRangeTest)
    assert w.result is not saved
    band = saved.band()
    np.testing.assert_array_equal(drawn(w.plot.band.fill.y), np.vstack([band.low, band.high]))
    assert w.controls.status.value.startswith("saved sweep: completed: 5 of 5 runs")
    assert w.controls.run_button.disabled
    move(w.controls.beta, 0.5)  # re-smoothing redraws the band from the runs
    np.testing.assert_allclose(drawn(w.plot.band.median.y), saved.with_beta(0.5).median)
    assert saved.runs[0].beta == 0  # the caller's result is untouched
    w.close()


def test_seed_needs_repeats(setup: Setup) -> None:
    with pytest.raises(TypeError, match="repeats"):
        setup.widget(seed=3)
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        setup.widget(data=shuffled_loader(), repeats=0)
