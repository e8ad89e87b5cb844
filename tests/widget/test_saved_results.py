"""``LRWidget.from_result``: a saved sweep shown for selection, with no model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lr_widget.curves.smoothing import debiased_ema
from lr_widget.results.range_test import RangeTestResult
from lr_widget.suggestions.registry import DEFAULT_RULE
from lr_widget.widget import LRWidget

from .frontend import click, click_plot, drawn, move
from .scripted import valley_curve


def _saved() -> RangeTestResult:
    lrs = np.logspace(-6, 0, 60).tolist()
    return RangeTestResult(
        lrs=lrs,
        losses=[valley_curve(lr) for lr in lrs],
        beta=0.7,
        stop_detail="reached end_lr after 60 steps",
        settings={"start_lr": 1e-6, "end_lr": 1.0, "num_steps": 60, "beta": 0.7},
    )


def _assert_shows_without_a_model(w: LRWidget, saved: RangeTestResult) -> None:
    controls = w.controls
    assert w.finder is None
    assert controls.run_button.disabled
    assert controls.stop_button.disabled
    assert controls.start_lr.disabled
    assert controls.end_lr.disabled
    assert controls.num_steps.disabled
    assert not controls.beta.disabled
    assert controls.beta.value == saved.beta
    assert w.result is not None
    assert w.result.lrs == saved.lrs
    np.testing.assert_allclose(drawn(w.plot.loss_line.y), saved.smoothed_losses)
    assert w.plot.suggestion_marks[DEFAULT_RULE].visible
    assert "completed" in controls.status.value
    with pytest.raises(RuntimeError, match="no model"):
        w.run()
    click(controls.run_button)  # a click that got through anyway does nothing
    assert not w.running


def test_from_a_result_object() -> None:
    saved = _saved()
    w = LRWidget.from_result(saved)
    _assert_shows_without_a_model(w, saved)
    click_plot(w, saved.lrs[12] * 1.01)
    assert w.lr == saved.lrs[12]
    w.close()


@pytest.mark.parametrize("as_text", [False, True])
def test_from_a_json_path(tmp_path: Path, as_text: bool) -> None:
    saved = _saved()
    path = saved.save(tmp_path / "sweep.json")
    w = LRWidget.from_result(str(path) if as_text else path)
    _assert_shows_without_a_model(w, saved)
    w.close()


def test_smoothing_a_saved_result_leaves_the_callers_object_alone() -> None:
    saved = _saved()
    w = LRWidget.from_result(saved)
    move(w.controls.beta, 0.2)
    np.testing.assert_allclose(drawn(w.plot.loss_line.y), debiased_ema(saved.losses, 0.2))
    assert w.shown_result is not None
    assert w.shown_result.beta == 0.2
    assert w.result is not None
    assert w.result.beta == 0.7
    assert saved.beta == 0.7
    assert w.suggestions["valley"] == saved.with_beta(0.2).suggest("valley")
    w.close()


def test_from_result_rejects_other_things() -> None:
    with pytest.raises(TypeError, match="a RepeatedRangeTest or the path"):
        LRWidget.from_result(42)  # type: ignore[arg-type]
