"""Comparing sweeps: keeping results as overlays, clearing them, and ``LRWidget.compare``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lr_widget.curves.smoothing import debiased_ema
from lr_widget.results.compare import Comparison
from lr_widget.results.range_test import RangeTestResult
from lr_widget.results.repeated import RepeatedRangeTest
from lr_widget.widget import LRWidget
from lr_widget.widget.overlays import KEPT_PALETTE

from .frontend import click, click_plot, drawn, move
from .scripted import ScriptedStep, Setup, shuffled_loader, valley_curve


def _saved(start: float, stop: float, count: int, shift: float = 0.0) -> RangeTestResult:
    lrs = np.logspace(start, stop, count).tolist()
    return RangeTestResult(
        lrs=lrs,
        losses=[valley_curve(lr) + shift for lr in lrs],
        beta=0.6,
        settings={"start_lr": lrs[0], "end_lr": lrs[-1], "num_steps": count, "beta": 0.6},
    )


def _repeated(count: int = 30) -> RepeatedRangeTest:
    lrs = np.logspace(-5, -1, count)
    runs = [
        RangeTestResult(lrs=lrs.tolist(), losses=[valley_curve(lr) + 0.05 * i for lr in lrs])
        for i in range(3)
    ]
    return RepeatedRangeTest(runs, seeds=[0, 1, 2], repeats=3)


def test_keep_draws_the_result_as_a_labelled_line_with_a_legend_entry(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    assert w.controls.keep_button.disabled  # nothing to keep yet
    with pytest.raises(ValueError, match="no result to keep"):
        w.keep()
    w.run()
    first = w.wait()
    assert isinstance(first, RangeTestResult)
    assert not w.controls.keep_button.disabled

    click(w.controls.keep_button)
    assert w.comparison.labels == ["run 1"]
    kept = w.comparison["run 1"]
    assert kept is not first  # a copy: later re-smoothing of the live result leaves it alone
    assert kept.to_dict() == first.to_dict()
    line = w.plot.kept.line_of("run 1")
    assert line in w.plot.figure.marks
    assert line.labels == ["run 1"]
    assert "run 1" in w.plot.legend.labels
    assert line.colors == [KEPT_PALETTE[0]]
    fitted = np.isfinite(first.lag_free_curve)  # the curve its rules read, to the blow-up
    np.testing.assert_array_equal(drawn(line.x), np.asarray(first.lrs)[fitted])
    np.testing.assert_allclose(drawn(line.y), first.lag_free_curve[fitted])
    assert not w.plot.kept.fill_of("run 1").visible  # a single run: no band
    assert not w.controls.clear_button.disabled

    assert w.keep("second look") == "second look"
    second = w.plot.kept.line_of("second look")
    assert second.colors == [KEPT_PALETTE[1]]
    with pytest.raises(ValueError, match="already used"):
        w.keep("second look")


def test_kept_lines_are_the_fits_the_smoothing_slider_does_not_move(setup: Setup) -> None:
    """A kept line is the curve its rules read, like the bold main curve: the slider re-smooths
    the live view's moving average only."""
    w = setup.widget(ScriptedStep())
    w.run()
    result = w.wait()
    assert isinstance(result, RangeTestResult)
    w.keep("a")
    before = drawn(w.plot.kept.line_of("a").y).copy()
    move(w.controls.beta, 0.3)
    assert w.plot.loss_line.y.tolist() == pytest.approx(debiased_ema(result.losses, 0.3).tolist())
    np.testing.assert_array_equal(drawn(w.plot.kept.line_of("a").y), before)


def test_keep_takes_another_result_or_a_saved_file(setup: Setup, tmp_path: Path) -> None:
    """A fresh widget can show an earlier sweep beside its own (the earlier widget's plot stays
    as it was): keep(label, result=...) with a result or the path of a saved one."""
    earlier = _saved(-5, -1, 30, shift=0.2)
    earlier.save(tmp_path / "earlier.json")
    w = setup.widget(ScriptedStep())
    try:
        assert w.keep("earlier", result=earlier) == "earlier"
        assert w.keep("from file", result=tmp_path / "earlier.json") == "from file"
        assert w.comparison["earlier"] is not earlier  # a copy
        assert w.comparison["from file"].to_dict() == earlier.to_dict()
        assert w.plot.kept.line_of("earlier") in w.plot.figure.marks
        with pytest.raises(TypeError, match="result must be a RangeTestResult"):
            w.keep("bad", result=42)  # type: ignore[arg-type]
    finally:
        w.close()


def test_keep_is_refused_while_a_sweep_runs(setup: Setup) -> None:
    step = ScriptedStep(hold_at=3)
    w = setup.widget(step)
    w.run()
    step.wait_until_held()
    assert w.controls.keep_button.disabled
    with pytest.raises(RuntimeError, match="sweep is running"):
        w.keep()
    step.release()
    w.wait()


def test_clear_removes_every_kept_line(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    w.run()
    w.wait()
    w.keep("a")
    w.keep("b")
    lines = [w.plot.kept.line_of(label) for label in ("a", "b")]

    click(w.controls.clear_button)

    assert len(w.comparison) == 0
    assert w.plot.kept.labels == []
    assert not any(line in w.plot.figure.marks for line in lines)
    assert w.controls.clear_button.disabled
    assert w.plot.loss_line in w.plot.figure.marks  # the main curve stays
    w.keep("c")  # colours start over
    assert w.plot.kept.line_of("c").colors == [KEPT_PALETTE[0]]


def test_a_kept_repeated_result_draws_its_band(setup: Setup) -> None:
    w = setup.widget(data=shuffled_loader(), repeats=2, num_steps=12)
    w.run()
    result = w.wait()
    assert isinstance(result, RepeatedRangeTest)
    w.keep("repeated")
    band = result.band()
    fill = w.plot.kept.fill_of("repeated")
    assert fill.visible
    assert fill in w.plot.figure.marks
    np.testing.assert_array_equal(drawn(fill.y), np.vstack([band.low, band.high]))
    np.testing.assert_array_equal(drawn(w.plot.kept.line_of("repeated").y), band.median)


def test_compare_from_json_paths_keeps_the_file_names_as_labels(tmp_path: Path) -> None:
    sgd, adam = _saved(-6, 0, 61), _saved(-5, -1, 25, shift=0.3)
    paths = [sgd.save(tmp_path / "sgd.json"), _repeated().save(tmp_path / "adam_x3.json")]
    paths.append(adam.save(tmp_path / "adam.json"))
    w = LRWidget.compare(paths)

    assert w.comparison.labels == ["sgd", "adam_x3", "adam"]
    assert w.comparison["sgd"].to_dict() == sgd.to_dict()
    assert w.comparison["adam"].to_dict() == adam.to_dict()
    assert w.finder is None
    assert w.controls.run_button.disabled
    # The first is the main curve (named in the legend), the others are overlays.
    assert w.result is w.comparison["sgd"]
    assert w.plot.loss_line.labels == ["sgd: loss (smoothed)"]
    assert w.plot.kept.labels == ["adam_x3", "adam"]
    assert w.plot.kept.fill_of("adam_x3").visible
    assert w.plot.x_scale.min == sgd.lrs[0]
    assert w.plot.x_scale.max == sgd.lrs[-1]
    # Selection works on the first result's LRs.
    click_plot(w, sgd.lrs[17] * 1.02)
    assert w.lr == sgd.lrs[17]
    w.close()


def test_a_comparison_survives_a_round_trip_through_json(tmp_path: Path) -> None:
    first = LRWidget.compare([_saved(-6, 0, 61), _repeated()], labels=["baseline", "wide"])
    path = first.comparison.save(tmp_path / "comparison.json")
    first.close()

    again = LRWidget.compare(Comparison.load(path))

    assert again.comparison.labels == ["baseline", "wide"]
    assert again.plot.kept.labels == ["wide"]
    assert again.comparison.to_dict() == Comparison.load(path).to_dict()
    again.close()


def test_compare_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        LRWidget.compare([])
    with pytest.raises(ValueError, match="one entry per result"):
        LRWidget.compare([_saved(-6, 0, 61)], labels=["a", "b"])
    with pytest.raises(TypeError, match="list of results"):
        LRWidget.compare(_saved(-6, 0, 61))  # type: ignore[arg-type]
    path = _saved(-6, 0, 61).save(tmp_path / "same.json")
    w = LRWidget.compare([path, path])  # equal file names get distinct labels
    assert w.comparison.labels == ["same", "same (2)"]
    w.close()
