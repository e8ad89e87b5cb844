"""The "train steps" box: the length of the training the LR is for moves the default suggestion,
its marker and its button, without a new sweep."""

from __future__ import annotations

import pytest

from lr_widget.suggestions.length import ASSUMED_TRAIN_STEPS, divisor_for
from lr_widget.suggestions.registry import DEFAULT_RULE

from .frontend import click, drawn, move
from .scripted import ScriptedStep, Setup, valley_curve


def _swept(setup: Setup, **options: object) -> tuple[object, ScriptedStep]:
    step = ScriptedStep(loss_of_lr=valley_curve)
    w = setup.widget(step, num_steps=60, start_lr=1e-6, end_lr=1.0, **options)
    w.run()
    assert w.wait() is not None
    return w, step


def test_typing_a_length_moves_the_default_marker_without_a_sweep(setup: Setup) -> None:
    w, step = _swept(setup)
    calls = step.calls
    before = w.suggestions[DEFAULT_RULE].lr
    assert before is not None
    assert w.train_steps is None
    mark = w.plot.suggestion_marks[DEFAULT_RULE]

    move(w.controls.train_steps, 50_000)  # typed in the browser

    after = w.suggestions[DEFAULT_RULE].lr
    assert after is not None
    assert after == pytest.approx(before * divisor_for(None) / divisor_for(50_000), rel=1e-9)
    assert drawn(mark.x)[0] == pytest.approx(after)
    assert "50,000 training steps" in w.controls.suggestion_buttons[DEFAULT_RULE].tooltip
    assert w.train_steps == 50_000
    assert step.calls == calls  # nothing trained
    assert not w.running
    # the other rules do not read the length
    assert w.suggestions["minimum"].lr == pytest.approx(w.result.suggest("minimum").lr)

    move(w.controls.train_steps, 0)  # cleared: the assumed length again
    assert w.suggestions[DEFAULT_RULE].lr == pytest.approx(before)
    assert f"{ASSUMED_TRAIN_STEPS:,} training steps (assumed" in (
        w.controls.suggestion_buttons[DEFAULT_RULE].tooltip
    )


def test_the_length_given_to_the_widget_fills_the_box_and_the_next_sweeps(setup: Setup) -> None:
    w, _ = _swept(setup, train_steps=3_000)
    assert w.controls.train_steps.value == 3_000
    assert w.result is not None
    assert w.result.train_steps == 3_000
    assert "3,000 training steps" in w.suggestions[DEFAULT_RULE].reason

    w.train_steps = 200  # from Python: the box follows, and so does the next sweep's result
    assert w.controls.train_steps.value == 200
    assert "200 training steps" in w.suggestions[DEFAULT_RULE].reason
    click(w.controls.run_button)
    result = w.wait()
    assert result is not None
    assert result.train_steps == 200


def test_picking_the_default_takes_the_lr_for_the_length_in_the_box(setup: Setup) -> None:
    w, _ = _swept(setup)
    move(w.controls.train_steps, 10_000)
    click(w.controls.suggestion_buttons[DEFAULT_RULE])
    assert w.lr == pytest.approx(w.suggestions[DEFAULT_RULE].lr)
    assert w.pick() == w.lr


def test_a_bad_length_from_python_names_the_parameter(setup: Setup) -> None:
    w, _ = _swept(setup)
    with pytest.raises(ValueError, match="train_steps must be an integer >= 1, got -5"):
        w.train_steps = -5
    assert w.train_steps is None


def test_the_note_beside_the_box_says_what_zero_means(setup: Setup) -> None:
    w, _ = _swept(setup)
    assert w.controls.train_steps_note.value == f"0: unknown, {ASSUMED_TRAIN_STEPS:,} assumed"
    move(w.controls.train_steps, 4_000)
    assert w.controls.train_steps_note.value == ""
