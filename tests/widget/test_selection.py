"""Selecting an LR: plot clicks, suggestion buttons, ``w.lr``, applying it to optimizers."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import IPython
import numpy as np
import pytest
import torch
import traitlets

from lr_widget.curves.smoothing import debiased_ema
from lr_widget.frameworks import FrameworkLink
from lr_widget.results.range_test import RangeTestResult
from lr_widget.widget import LRWidget
from lr_widget.widget.targets import LRTargets

from .frontend import click, click_plot, click_point, drawn, main_curve
from .scripted import ScriptedStep, Setup, valley_curve


def _between(low: float, high: float, share: float) -> float:
    """The LR ``share`` of the way from ``low`` to ``high`` in log space."""
    return float(10 ** (math.log10(low) + share * (math.log10(high) - math.log10(low))))


def test_click_selects_the_recorded_lr_nearest_in_log_space(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    w.run()
    lrs = w.wait().lrs  # type: ignore[union-attr]
    seen: list[Any] = []
    w.observe(lambda change: seen.append(change["new"]), "lr")

    click_plot(w, _between(lrs[7], lrs[8], 0.4))
    assert w.lr == lrs[7]
    click_plot(w, _between(lrs[7], lrs[8], 0.6))
    assert w.lr == lrs[8]
    assert seen == [lrs[7], lrs[8]]


def test_click_between_two_lrs_picks_the_log_nearer_not_the_linearly_nearer() -> None:
    w = LRWidget.from_result(RangeTestResult(lrs=[1e-4, 1e-3, 1e-2], losses=[1.0, 0.5, 2.0]))
    click_plot(w, 4e-4)  # 0.6 decade above 1e-4, 0.4 below 1e-3; linearly nearer 1e-4
    assert w.lr == 1e-3
    w.close()


def test_a_click_on_a_point_selects_exactly_that_point(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    w.run()
    lrs = w.wait().lrs  # type: ignore[union-attr]
    for index in (0, 7, len(lrs) - 1):
        click_point(w, index)
        assert w.lr == lrs[index]


def test_a_point_click_from_an_older_drawing_selects_nothing_new(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    w.run()
    lrs = w.wait().lrs  # type: ignore[union-attr]
    click_point(w, 3)
    click_point(w, len(lrs))  # an index the current points do not have
    click_point(w, -1)
    assert w.lr == lrs[3]


def test_point_indices_skip_the_points_the_curve_cannot_draw(setup: Setup) -> None:
    losses = [2.0 - 0.05 * i for i in range(12)] + [math.inf]
    w = setup.widget(ScriptedStep(losses=losses), num_steps=len(losses), beta=0.0)
    w.run()
    result = w.wait()
    assert result is not None
    assert len(result.lrs) == len(losses)
    assert drawn(w.plot.hover_points.x).tolist() == result.lrs[:-1]
    click_point(w, len(losses) - 2)  # the last drawn point
    assert w.lr == result.lrs[-2]


def test_selection_shows_a_marker_a_dashed_line_and_a_label(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    w.run()
    result = w.wait()
    assert result is not None
    click_plot(w, result.lrs[5])

    smoothed = debiased_ema(result.losses, result.beta)
    plot = w.plot
    assert plot.selection_line.visible
    assert plot.selection_dot.visible
    assert plot.selection_line.line_style == "dashed"
    assert drawn(plot.selection_line.x).tolist() == [result.lrs[5]] * 2
    assert drawn(plot.selection_dot.x).tolist() == [result.lrs[5]]
    shown = main_curve(result.lag_free_curve, smoothed)  # the curve drawn once it ended
    assert drawn(plot.selection_dot.y)[0] == pytest.approx(shown[5])
    label = w.controls.selection_label.value
    assert f"{result.lrs[5]:.3e}" in label
    # The value reported is the bold curve's, named as such: the fit, not the smoothed loss.
    assert math.isfinite(result.lag_free_curve[5])
    assert f"(loss {shown[5]:.4g} on the lag-free fit)" in label


def test_a_selection_past_the_blow_up_reports_the_smoothed_loss_by_that_name() -> None:
    lrs = np.logspace(-5, 1, 80)
    losses = 2.0 - np.tanh(np.log10(lrs) + 3) + np.where(lrs > 0.5, 50.0 * lrs, 0.0)
    result = RangeTestResult(lrs=lrs.tolist(), losses=losses.tolist(), stop_reason="diverged")
    past_fit = int(np.flatnonzero(~np.isfinite(result.lag_free_curve))[0])  # the fit ends
    w = LRWidget.from_result(result)
    try:
        click_plot(w, lrs[past_fit])
        smoothed = debiased_ema(result.losses, result.beta)
        assert f"(loss {smoothed[past_fit]:.4g} on the smoothed curve)" in (
            w.controls.selection_label.value
        )
    finally:
        w.close()


def test_clicks_before_anything_is_recorded_select_nothing(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    click_plot(w, 1e-3)
    assert w.lr is None


def test_suggestion_buttons_select_each_suggestions_lr() -> None:
    lrs = np.logspace(-6, 0, 80)
    losses = [valley_curve(lr) for lr in lrs]
    w = LRWidget.from_result(RangeTestResult(lrs=lrs.tolist(), losses=losses, beta=0.6))
    expected = RangeTestResult(lrs=lrs.tolist(), losses=losses, beta=0.6).suggestions()
    answered = [rule for rule, suggestion in expected.items() if suggestion.ok]
    assert {"valley", "steep"} <= set(answered)

    for rule, button in w.controls.suggestion_buttons.items():
        assert button.description == rule
        assert button.disabled == (rule not in answered)
    for rule in answered:
        click(w.controls.suggestion_buttons[rule])
        assert w.lr == expected[rule].lr
    w.close()


def test_apply_writes_the_lr_into_every_group_keeping_their_ratios(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    w.run()
    w.wait()
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    optimizer = torch.optim.AdamW(
        [
            {"params": model[0].parameters(), "lr": 1e-4},  # backbone at a tenth
            {"params": model[1].parameters(), "lr": 1e-3},
        ]
    )
    chosen = w.select(3e-3)

    assert w.apply(optimizer) == chosen
    assert optimizer.param_groups[1]["lr"] == pytest.approx(chosen, rel=1e-12)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(chosen / 10, rel=1e-12)


def test_apply_without_a_selection_says_what_to_do(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    with pytest.raises(ValueError, match="no LR selected"):
        w.apply(setup.optimizer)


def test_apply_to_receives_every_selection() -> None:
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    result = RangeTestResult(lrs=[1e-4, 1e-3, 1e-2], losses=[1.0, 0.5, 2.0])
    w = LRWidget.from_result(result, apply_to=optimizer)
    click_plot(w, 1e-4)
    assert optimizer.param_groups[0]["lr"] == 1e-4
    click_plot(w, 1e-2)
    assert optimizer.param_groups[0]["lr"] == 1e-2
    w.close()


def test_a_selection_during_the_sweep_reaches_apply_to_after_the_restore(setup: Setup) -> None:
    step = ScriptedStep(hold_at=10)
    w = setup.widget(step, apply_to=setup.optimizer)
    w.run()
    step.wait_until_held()
    click_plot(w, 1e-4)  # the sweep would overwrite it, then restore lr=0.1
    chosen = w.lr
    assert chosen is not None
    step.release()
    w.wait()
    assert setup.optimizer.param_groups[0]["lr"] == pytest.approx(chosen)


def test_a_framework_receives_each_selection_deferred_while_a_sweep_trains_it() -> None:
    """update_attr=True: each selected LR goes to the framework object; while a sweep runs
    (and will restore the object) the write waits for its end, as for apply_to."""
    written: list[float] = []
    link = FrameworkLink("LightningModule", None, write=lambda lr: written.append(lr) or "m.lr")
    sweeping: list[torch.optim.Optimizer] = []
    targets = LRTargets(
        None, None, swept_optimizer=lambda: sweeping[0] if sweeping else None, framework=link
    )
    targets.selected(1e-3)
    assert written == [1e-3]
    sweeping.append(torch.optim.SGD(torch.nn.Linear(2, 1).parameters(), lr=0.1))
    targets.selected(2e-3)
    assert written == [1e-3]  # not during the sweep
    sweeping.clear()
    targets.sweep_ended(2e-3)
    assert written == [1e-3, 2e-3]
    targets.sweep_ended(2e-3)  # nothing pending any more
    assert written == [1e-3, 2e-3]


def test_assign_to_writes_the_notebook_variable_only_when_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Shell:
        user_ns: ClassVar[dict[str, Any]] = {}

    monkeypatch.setattr(IPython, "get_ipython", lambda: Shell)
    result = RangeTestResult(lrs=[1e-4, 1e-3, 1e-2], losses=[1.0, 0.5, 2.0])
    quiet = LRWidget.from_result(result)
    click_plot(quiet, 1e-3)
    assert Shell.user_ns == {}

    w = LRWidget.from_result(result, assign_to="lr")
    click_plot(w, 1e-2)
    assert Shell.user_ns == {"lr": 1e-2}
    quiet.close()
    w.close()


def test_lr_rejects_values_that_are_not_learning_rates() -> None:
    w = LRWidget.from_result(RangeTestResult(lrs=[1e-4, 1e-3], losses=[1.0, 0.5]))
    for bad in (0.0, -1e-3, math.inf, math.nan):
        with pytest.raises(traitlets.TraitError, match="lr must be"):
            w.lr = bad
    w.lr = 5e-4  # any positive LR may be set directly
    assert w.lr == 5e-4
    w.close()
