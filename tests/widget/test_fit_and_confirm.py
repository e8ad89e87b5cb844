"""After a sweep: the drawn curve becomes the lag-free fit the rules read; Confirm trains probes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lr_widget.plotting.style import FIT_LABEL
from lr_widget.results.confirmation import CONFIRM_RULE
from lr_widget.suggestions.registry import CURVE_READ, DEFAULT_RULE
from lr_widget.widget.controls import CONFIRM_BUTTON

from .frontend import drawn
from .scripted import HOLD_TIMEOUT_S, ScriptedStep, Setup, valley_curve


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


def test_the_drawn_curve_switches_to_the_lag_free_fit_when_the_sweep_ends(setup: Setup) -> None:
    step = ScriptedStep(hold_at=12, loss_of_lr=valley_curve)
    w = setup.widget(step, num_steps=30)
    w.run()
    step.wait_until_held()
    # Mid-sweep the main curve is the live EMA and no fit is drawn.
    assert not w.plot.fit_line.visible
    step.release()
    result = w.wait()
    assert result is not None
    assert result.num_steps > 12

    assert w.plot.fit_line.visible
    assert FIT_LABEL in w.plot.legend.labels
    assert w.plot.fit_line.labels == [FIT_LABEL]
    fit = result.lag_free_curve
    np.testing.assert_allclose(drawn(w.plot.fit_line.y), fit, equal_nan=True)
    # The EMA stays, faded and dashed, for comparison; the rules read the fit, and say so.
    assert w.plot.loss_line.line_style == "dashed"
    assert w.plot.loss_line.opacities[0] < 1
    assert f"rules read {CURVE_READ}" in result.summary()
    # Hover points sit on the fit where it is defined (it ends at the blow-up).
    finite = np.isfinite(fit)
    np.testing.assert_allclose(drawn(w.plot.hover_points.y)[finite], fit[finite])

    # A new sweep shows the live EMA again until it ends.
    step.hold_at, step.calls = 5, 0
    step.reached.clear()
    step._released.clear()
    w.run()
    step.wait_until_held()
    assert not w.plot.fit_line.visible
    assert w.plot.loss_line.line_style == "solid"
    step.release()
    w.wait()
    assert w.plot.fit_line.visible


def test_resmoothing_keeps_the_fit_and_only_changes_the_ema(setup: Setup) -> None:
    w = setup.widget(ScriptedStep(loss_of_lr=valley_curve), num_steps=30, beta=0.9)
    w.run()
    result = w.wait()
    assert result is not None
    fit_before = drawn(w.plot.fit_line.y).copy()
    ema_before = drawn(w.plot.loss_line.y).copy()
    w.controls.beta.value = 0.5
    np.testing.assert_allclose(drawn(w.plot.fit_line.y), fit_before, equal_nan=True)
    assert not np.allclose(drawn(w.plot.loss_line.y), ema_before)
    assert w.suggestions[DEFAULT_RULE].lr == result.suggested_lr  # the rules ignore beta


def test_confirm_trains_probes_restores_the_model_and_reports_a_winner(setup: Setup) -> None:
    w = setup.widget(ScriptedStep(), num_steps=30)
    button = w.controls.confirm_button
    assert button.description == CONFIRM_BUTTON
    assert button.disabled
    w.run()
    w.wait()
    assert not button.disabled
    before = _state(setup.model)
    optimizer_before = {k: v for k, v in setup.optimizer.state_dict()["param_groups"][0].items()}

    w.lr = 1e-2
    assert w.confirm(steps=6)
    assert not w.run()  # no sweep while probes train
    w.wait(HOLD_TIMEOUT_S)
    confirmation = w.confirmation
    assert confirmation is not None
    assert confirmation.suggested_lr == pytest.approx(1e-2)
    assert len(confirmation.probes) == 3
    assert confirmation.steps == 18
    assert confirmation.reason in w.controls.status.value
    after = _state(setup.model)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert setup.optimizer.state_dict()["param_groups"][0] == optimizer_before
    if confirmation.decisive:
        assert w.lr == pytest.approx(confirmation.winner)
    else:
        assert w.lr == pytest.approx(1e-2)
    assert not button.disabled
    assert not w.controls.run_button.disabled


def test_the_confirm_button_centres_on_the_confirm_rule_without_a_selection(setup: Setup) -> None:
    w = setup.widget(ScriptedStep(), num_steps=30)
    w.run()
    w.wait()
    suggested = w.suggestions[CONFIRM_RULE].lr
    assert suggested is not None
    assert suggested != w.suggestions[DEFAULT_RULE].lr  # the test tells the two centres apart
    w.controls.confirm_button.click()
    w.wait(HOLD_TIMEOUT_S)
    assert w.confirmation is not None
    assert w.confirmation.suggested_lr == pytest.approx(suggested)


def test_confirm_errors_are_clear_and_change_nothing(setup: Setup) -> None:
    from lr_widget.widget import LRWidget

    saved = LRWidget.from_result(_finished(setup))
    with pytest.raises(RuntimeError, match="no model"):
        saved.confirm(1e-3)
    saved.close()
    w = setup.widget(ScriptedStep(), num_steps=30)
    with pytest.raises(ValueError, match="no sweep result"):
        w.confirm()  # nothing swept, nothing selected
    with pytest.raises(ValueError, match="lr"):
        w.confirm(-1.0)
    w.run()
    w.wait()
    for bad, error, match in (
        ({"steps": 2}, ValueError, "steps must be an integer >= 4"),
        ({"speed": 1}, ValueError, r"unknown options \['speed'\]"),
        ({"factors": [1.0]}, ValueError, "factors must hold at least two"),
    ):
        with pytest.raises(error, match=match):  # raised here, not in the probes' thread
            w.confirm(1e-3, **bad)
        assert not w.session.confirming
    assert w.confirmation is None


def _finished(setup: Setup) -> object:
    w = setup.widget(ScriptedStep(), num_steps=30)
    w.run()
    return w.wait()
