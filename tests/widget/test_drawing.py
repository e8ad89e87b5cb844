"""What the plot draws: live throttled curves, re-smoothing, a readable y range, markers, axes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from lr_widget.curves.axes import MAX_DRAWN_POINTS, decade_ticks, robust_y_range
from lr_widget.curves.smoothing import debiased_ema
from lr_widget.plotting.style import EMA_OPACITY, FIT_LABEL
from lr_widget.results.range_test import RangeTestResult, StopReason
from lr_widget.suggestions.registry import DEFAULT_RULE
from lr_widget.widget import LRWidget, runner
from lr_widget.widget.clicks import TOOLTIP_CLASS, TRANSPARENT_PNG
from lr_widget.widget.overlays import set_line

from .frontend import drawn, main_curve, move
from .scripted import FakeClock, ScriptedStep, Setup, valley_curve


def _record_updates(mark: Any) -> list[dict[str, Any]]:
    """Record the state of every message ``mark`` sends to the browser."""
    sent: list[dict[str, Any]] = []
    mark._send = lambda msg, buffers=None: sent.append(msg["state"])
    return sent


def test_live_updates_are_throttled_and_the_final_state_is_always_sent(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(runner, "monotonic", clock)
    num_steps = 40
    # Each step takes 0.05 s of fake time: with 0.15 s between redraws, about every 3rd step.
    w = setup.widget(
        ScriptedStep(clock=clock, tick=0.05), num_steps=num_steps, update_interval_s=0.15
    )
    sent = _record_updates(w.plot.loss_line)
    w.run()
    result = w.wait()
    assert result is not None
    assert result.num_steps == num_steps

    curve_updates = [state for state in sent if "y" in state]
    assert all("x" in state for state in curve_updates)  # x and y in one message (hold_sync)
    lengths = [state["y"]["shape"][0] for state in curve_updates]
    intermediate = [n for n in lengths if 0 < n < num_steps]
    assert 5 <= len(intermediate) <= num_steps // 2
    assert lengths == sorted(lengths)
    assert lengths[-1] == num_steps
    np.testing.assert_allclose(drawn(w.plot.loss_line.y), debiased_ema(result.losses, result.beta))
    np.testing.assert_allclose(drawn(w.plot.raw_line.y), result.losses)


def test_a_lines_style_travels_with_its_data_in_one_message(setup: Setup) -> None:
    # The fit appears at a sweep's end and the EMA fades under it; the next sweep hides the fit
    # and unfades the EMA. Each change of style goes in the message that carries the new data.
    w = setup.widget(ScriptedStep(loss_of_lr=valley_curve), num_steps=30)
    w.run()
    w.wait()
    sent = {name: _record_updates(getattr(w.plot, name)) for name in ("loss_line", "fit_line")}
    w.run()
    w.wait()
    loss, fit = sent["loss_line"], sent["fit_line"]
    assert [state["opacities"] for state in loss if "opacities" in state] == [[1.0], [EMA_OPACITY]]
    assert [state["visible"] for state in fit if "visible" in state] == [False, True]
    assert all("y" in state for state in loss + fit), (loss, fit)


def test_resmoothing_redraws_the_curve_without_a_sweep(setup: Setup) -> None:
    step = ScriptedStep()
    w = setup.widget(step, beta=0.9)
    w.run()
    before = w.wait()
    assert before is not None
    calls = step.calls

    move(w.controls.beta, 0.5)

    assert w.result is before
    assert step.calls == calls
    assert not w.running
    expected = debiased_ema(before.losses, 0.5)
    np.testing.assert_allclose(drawn(w.plot.loss_line.y), expected)
    assert not np.allclose(expected, debiased_ema(before.losses, 0.9))  # the test can fail
    assert w.shown_result is not None
    np.testing.assert_allclose(w.shown_result.smoothed_losses, expected)  # what is shown
    np.testing.assert_allclose(before.smoothed_losses, debiased_ema(before.losses, 0.9))


def test_the_smoothing_slider_never_changes_the_result_or_its_suggestion(setup: Setup) -> None:
    w = setup.widget(ScriptedStep(loss_of_lr=valley_curve), num_steps=60, beta=0.9)
    w.run()
    result = w.wait()
    assert result is not None
    saved, suggested = result.to_dict(), result.suggested_lr
    assert suggested is not None

    move(w.controls.beta, 0.0)

    assert w.result is result
    assert w.result.to_dict() == saved
    assert w.result.suggested_lr == suggested
    assert w.shown_result is not None
    assert w.shown_result.beta == 0.0
    shown = w.suggestions[DEFAULT_RULE].lr
    assert shown == w.shown_result.suggested_lr
    # The rules read the lag-free curve of the raw losses: beta moves only the drawn EMA.
    assert shown == suggested


def test_resmoothing_during_a_sweep_is_drawn_by_the_sweep(setup: Setup) -> None:
    step = ScriptedStep(hold_at=8)
    w = setup.widget(step, beta=0.9, update_interval_s=0)
    w.run()
    step.wait_until_held()
    move(w.controls.beta, 0.3)
    step.release()
    result = w.wait()
    assert result is not None
    assert result.beta == 0.9  # the sweep's own result is never re-smoothed
    assert w.shown_result is not None
    assert w.shown_result.beta == 0.3
    np.testing.assert_allclose(drawn(w.plot.loss_line.y), debiased_ema(result.losses, 0.3))


def test_the_y_range_stays_finite_and_readable_when_the_loss_explodes(setup: Setup) -> None:
    falling = [2.0 - 0.05 * i for i in range(20)]
    losses = [*falling, 50.0, 1e6, 1e20, 1e38, math.inf, math.inf]
    w = setup.widget(
        ScriptedStep(losses=losses), num_steps=len(losses), beta=0.5, diverge_factor=math.inf
    )
    w.run()
    result = w.wait()
    assert result is not None
    assert result.stop_reason is StopReason.NON_FINITE

    low, high = w.plot.y_scale.min, w.plot.y_scale.max
    assert math.isfinite(low)
    assert math.isfinite(high)
    assert 0.5 < low < min(falling)
    assert max(falling) < high < 4.0
    raw = drawn(w.plot.raw_line.y)
    assert np.all(np.isfinite(raw))  # the inf is not drawn as a spike, nor sent as a NaN end
    assert raw.size == len(result.losses) - 1
    assert drawn(w.plot.raw_line.x).size == raw.size


def test_a_line_ending_in_nan_is_sent_without_its_nan_tail() -> None:
    """bqplot labels a line at its last point; a NaN there is "translate(x,undefined)" in the
    browser's console. Gaps inside the line stay."""
    import bqplot

    line = bqplot.Lines(x=np.zeros(0), y=np.zeros(0))
    set_line(line, [1.0, 2.0, 3.0, 4.0, 5.0], [1.0, math.nan, 2.0, math.nan, math.inf])
    assert drawn(line.x).tolist() == [1.0, 2.0, 3.0]
    assert np.isnan(drawn(line.y)[1])
    set_line(line, [1.0, 2.0], [math.nan, math.nan])
    assert drawn(line.x).size == drawn(line.y).size == 0


def test_a_saved_exploding_curve_gets_a_finite_y_range() -> None:
    lrs = np.logspace(-5, 0, 30).tolist()
    losses = [1.0 - 0.01 * i for i in range(25)] + [1e10, 1e30, math.inf, math.nan, math.inf]
    w = LRWidget.from_result(RangeTestResult(lrs=lrs, losses=losses, beta=0.0))
    assert math.isfinite(w.plot.y_scale.min)
    assert math.isfinite(w.plot.y_scale.max)
    assert w.plot.y_scale.max < 2.0
    w.close()


def test_robust_y_range_caps_the_divergence_tail_and_pads() -> None:
    y_range = robust_y_range([3.0, 2.0, 1.0, 2.0, 1e9, math.inf])
    assert y_range is not None
    low, high = y_range
    assert low == pytest.approx(1.0 - 0.05 * 3.0)
    assert high == pytest.approx(4.0 + 0.05 * 3.0)  # 3 + half of the drop of 2, padded
    assert robust_y_range([math.nan, math.inf]) is None
    flat = robust_y_range([2.0, 2.0, 2.0])
    assert flat is not None
    assert flat[0] < 2.0 < flat[1]


def test_the_default_is_marked_as_the_answer_and_the_other_rules_are_one_toggle_away(
    setup: Setup,
) -> None:
    step = ScriptedStep(hold_at=50, loss_of_lr=valley_curve)
    w = setup.widget(step, num_steps=80, start_lr=1e-6, end_lr=1.0, diverge_factor=math.inf)
    w.run()
    step.wait_until_held()
    marks = w.plot.suggestion_marks
    assert not any(mark.visible for mark in marks.values())
    assert all(button.disabled for button in w.controls.suggestion_buttons.values())
    step.release()
    result = w.wait()
    assert result is not None
    answer = result.suggestion
    assert answer.lr is not None

    # The answer: the default's marker, labelled on the plot, in the legend and under the plot.
    assert [rule for rule, mark in marks.items() if mark.visible] == [DEFAULT_RULE]
    assert drawn(marks[DEFAULT_RULE].x).tolist() == [answer.lr]
    assert w.plot.answer_shown == f"suggested {answer.lr:.1e}"
    assert f"suggested {answer.lr:.1e} ({DEFAULT_RULE})" in w.plot.legend.labels
    assert f"<b>suggested {answer.lr:.1e}</b>" in w.controls.answer.value
    buttons = w.controls.suggestion_buttons
    assert next(iter(buttons)) == DEFAULT_RULE  # first, and distinct
    assert buttons[DEFAULT_RULE].button_style == "success"
    assert all(buttons[rule].layout.display == "none" for rule in buttons if rule != DEFAULT_RULE)

    # All rules: every answer's marker and button, each named in the legend; then back.
    w.controls.all_rules.value = True
    for rule, suggestion in result.suggestions().items():
        mark, button = marks[rule], buttons[rule]
        assert mark.visible == suggestion.ok
        assert button.disabled == (not suggestion.ok)
        assert button.layout.display is None
        if suggestion.ok:
            assert drawn(mark.x).tolist() == [suggestion.lr]
            assert mark.labels[0] in w.plot.legend.labels
            assert rule in mark.labels[0]
    assert marks["valley"].visible
    w.controls.all_rules.value = False
    assert [rule for rule, mark in marks.items() if mark.visible] == [DEFAULT_RULE]
    assert not any(label.startswith("valley") for label in w.plot.legend.labels)


def test_the_legend_lists_what_is_drawn_and_no_mark_uses_bqplots_own(setup: Setup) -> None:
    """bqplot's legend sits inside the plot area, over the data: every mark keeps it off, and the
    legend under the figure follows the curves as they come and go."""
    w = setup.widget(ScriptedStep(loss_of_lr=valley_curve), num_steps=60, start_lr=1e-6,
                     end_lr=1.0, diverge_factor=math.inf)  # fmt: skip
    assert w.plot.legend.labels == []  # nothing drawn yet
    w.run()
    w.wait()
    labels = w.plot.legend.labels
    assert labels[:3] == ["loss (raw)", "loss (smoothed)", FIT_LABEL]
    assert not any(mark.display_legend for mark in w.plot.figure.marks)
    w.keep("first")
    assert "first" in w.plot.legend.labels
    w.clear_kept()
    assert "first" not in w.plot.legend.labels


def test_the_last_sweeps_suggestion_buttons_hide_while_a_new_sweep_runs(setup: Setup) -> None:
    step = ScriptedStep(hold_at=80 + 40, loss_of_lr=valley_curve)  # step 40 of the second sweep
    w = setup.widget(step, num_steps=80, start_lr=1e-6, end_lr=1.0, diverge_factor=math.inf)
    row, button = w.controls.suggestion_row, w.controls.suggestion_buttons[DEFAULT_RULE]
    w.run()
    w.wait()
    assert not button.disabled
    assert row.layout.visibility != "hidden"
    w.run()
    step.wait_until_held()
    assert row.layout.visibility == "hidden"  # one message: no stale picks while it runs
    assert not button.disabled  # untouched: unchanged answers cost nothing at the end
    step.release()
    w.wait()
    assert row.layout.visibility == "visible"
    assert not button.disabled


def test_the_lr_axis_has_readable_decade_ticks(setup: Setup) -> None:
    w = setup.widget(ScriptedStep(), start_lr=1e-7, end_lr=10.0)
    axis = w.plot.x_axis
    assert axis.tick_format == ".0e"
    assert axis.tick_values.tolist() == [10.0**k for k in range(-7, 2)]
    assert w.plot.figure.animation_duration == 0
    assert decade_ticks(2e-4, 8e-4) == [2e-4, 8e-4]
    assert len(decade_ticks(1e-30, 1.0)) <= 11


def test_the_click_overlay_is_a_transparent_image_under_only_the_hover_points(
    setup: Setup,
) -> None:
    w = setup.widget(ScriptedStep())
    marks = w.plot.figure.marks
    assert marks[-2] is w.plot.overlay
    assert marks[-1] is w.plot.hover_points  # above the overlay, so hovering a point works
    assert type(marks[-2]).__name__ == "Image"
    assert w.plot.overlay.image.value == TRANSPARENT_PNG
    assert TRANSPARENT_PNG.startswith(b"\x89PNG\r\n\x1a\n")
    assert drawn(w.plot.overlay.x).tolist() == [1e-5, 1e-1]  # spans the LR range


def test_hover_points_sit_on_the_main_curve_with_an_lr_and_loss_tooltip(setup: Setup) -> None:
    w = setup.widget(ScriptedStep(), beta=0.6)
    w.run()
    result = w.wait()
    assert result is not None
    points = w.plot.hover_points

    assert drawn(points.x).tolist() == result.lrs
    smoothed = debiased_ema(result.losses, 0.6)
    np.testing.assert_allclose(drawn(points.y), main_curve(result.lag_free_curve, smoothed))
    assert points.interactions == {"hover": "tooltip"}
    assert max(points.opacities) < 0.5  # faint: the curve stays the thing to look at
    assert not points.display_legend
    tooltip = points.tooltip
    assert tooltip is w.plot.tooltip
    assert list(tooltip.fields) == ["x", "y"]
    assert list(tooltip.labels) == ["lr", "loss"]
    assert list(tooltip.formats) == [".2e", ".4g"]
    assert TOOLTIP_CLASS in tooltip._dom_classes


def test_hover_points_stay_on_the_fit_when_resmoothing_moves_the_ema(setup: Setup) -> None:
    w = setup.widget(ScriptedStep(), beta=0.9)
    w.run()
    result = w.wait()
    assert result is not None
    move(w.controls.beta, 0.2)
    smoothed = debiased_ema(result.losses, 0.2)
    np.testing.assert_allclose(drawn(w.plot.loss_line.y), smoothed)
    np.testing.assert_allclose(
        drawn(w.plot.hover_points.y), main_curve(result.lag_free_curve, smoothed)
    )


def test_the_end_of_a_sweep_draws_the_curves_and_their_fit_once(setup: Setup) -> None:
    # Shorter than one redraw interval: the sweep thread draws only the empty start and the
    # ended run, fit included; the main thread then adds the suggestions, not the curves again.
    w = setup.widget(ScriptedStep(), update_interval_s=60.0)
    w.run()  # before recording: the very first run sets the LR range and first band state
    w.wait()
    points, fit = _record_updates(w.plot.hover_points), _record_updates(w.plot.fit_line)
    w.run()
    result = w.wait()
    assert result is not None
    point_draws = [state["y"]["shape"][0] for state in points if "y" in state]
    assert point_draws == [0, result.num_steps]
    assert [state["y"]["shape"][0] for state in fit if "y" in state] == [0, result.num_steps]
    np.testing.assert_allclose(
        drawn(w.plot.hover_points.y),
        main_curve(result.lag_free_curve, debiased_ema(result.losses, result.beta)),
    )
    assert w.plot.fit_line.visible


@pytest.mark.slow
def test_a_10000_step_sweep_keeps_every_point_but_sends_a_bounded_envelope(setup: Setup) -> None:
    num_steps = 10_000
    losses = [2.0 - 1.5 * i / num_steps for i in range(num_steps)]
    losses[6_789] = 40.0  # one spike: the envelope must keep it
    w = setup.widget(
        ScriptedStep(losses=losses), num_steps=num_steps, start_lr=1e-6, end_lr=1e-2,
        diverge_factor=math.inf, beta=0.0, update_interval_s=0.05,
    )  # fmt: skip
    sizes: list[int] = []
    for mark in (w.plot.raw_line, w.plot.loss_line, w.plot.hover_points):
        original = mark._send
        mark._send = lambda msg, buffers=None, send=original: (
            sizes.append(sum(len(b) for b in buffers or [])),
            send(msg, buffers),
        )
    w.run()
    result = w.wait(120)
    assert result is not None
    assert result.num_steps == num_steps  # every point stays on the result
    raw_x = drawn(w.plot.raw_line.x)
    assert raw_x.size <= MAX_DRAWN_POINTS + 2
    assert drawn(w.plot.hover_points.x).size <= MAX_DRAWN_POINTS
    assert result.lrs[6_789] in raw_x  # the spike survives the thinning
    assert drawn(w.plot.raw_line.y).max() == 40.0
    assert raw_x[0] == result.lrs[0]
    assert raw_x[-1] == result.lrs[-1]
    assert sizes  # the test can fail: the marks were redrawn
    assert max(sizes) <= 2 * 8 * (MAX_DRAWN_POINTS + 2)  # x and y as float64, nothing more
