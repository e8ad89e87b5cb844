"""``pick()``, clear errors from ``select()``, and what the status and progress say at the end."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lr_widget.results.range_test import RangeTestResult
from lr_widget.suggestions.registry import DEFAULT_RULE
from lr_widget.widget import LRWidget

from .frontend import click_plot
from .scripted import ScriptedStep, Setup, valley_curve


@pytest.mark.parametrize("bad", [None, 0.0, -1e-3, float("nan"), float("inf"), "1e-3", True])
def test_select_names_lr_when_it_is_not_a_positive_number(setup: Setup, bad: Any) -> None:
    w = setup.widget(ScriptedStep())
    w.run()
    w.wait()
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0, got "):
        w.select(bad)
    assert w.lr is None


def test_pick_returns_the_default_suggestion_when_nothing_was_clicked(setup: Setup) -> None:
    w = setup.widget(ScriptedStep(loss_of_lr=valley_curve))
    w.run()
    expected = w.wait().suggest(DEFAULT_RULE).lr  # type: ignore[union-attr]
    assert expected is not None
    assert w.pick(timeout=60) == expected
    assert w.lr == expected


def test_pick_keeps_a_clicked_lr(setup: Setup) -> None:
    w = setup.widget(ScriptedStep(loss_of_lr=valley_curve))
    w.run()
    lrs = w.wait().lrs  # type: ignore[union-attr]
    click_plot(w, lrs[3])
    assert w.pick("steep") == lrs[3]


def test_pick_with_another_rule(setup: Setup) -> None:
    w = setup.widget(ScriptedStep(loss_of_lr=valley_curve))
    w.run()
    expected = w.wait().suggest("minimum").lr  # type: ignore[union-attr]
    assert w.pick("minimum") == expected


def test_pick_runs_the_sweep_of_a_widget_never_displayed(setup: Setup) -> None:
    step = ScriptedStep(loss_of_lr=valley_curve)
    w = setup.widget(step, autostart=True)
    lr = w.pick(timeout=60)
    assert step.calls == 20
    assert lr == w.suggestions[DEFAULT_RULE].lr


def test_pick_gives_the_rules_reason_when_it_has_no_answer() -> None:
    lrs = np.logspace(-5, -1, 30).tolist()
    rising = RangeTestResult(lrs=lrs, losses=np.linspace(1.0, 3.0, 30).tolist(), beta=0.0)
    w = LRWidget.from_result(rising)
    with pytest.raises(ValueError, match=f"the {DEFAULT_RULE} rule gives no LR to pick: .*never"):
        w.pick()
    with pytest.raises(ValueError, match="the steep rule gives no LR to pick: the loss never"):
        w.pick("steep")
    with pytest.raises(ValueError, match="rule must be one of"):
        w.pick("fastest")
    w.close()


def test_the_progress_line_says_done_not_time_left(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    w.run()
    w.wait()
    text = w.controls.progress_text.value
    assert text.startswith("done: 20 steps in ")
    assert text.endswith(" s")
    assert "left" not in text


def test_the_progress_line_gives_the_stop_reason(setup: Setup) -> None:
    step = ScriptedStep(hold_at=5)
    w = setup.widget(step)
    w.run()
    step.wait_until_held()
    w.stop()
    step.release()
    w.wait()
    assert w.controls.progress_text.value.startswith("stopped: 6 steps in ")


def test_the_status_names_the_optimizer_swept(setup: Setup) -> None:
    given = setup.widget(ScriptedStep())
    assert given.controls.status.value.endswith("· optimizer: SGD")
    given.run()
    given.wait()
    assert given.controls.status.value.startswith("completed")
    assert given.controls.status.value.endswith("· optimizer: SGD")

    default = setup.widget(ScriptedStep(), optimizer=None)
    assert default.controls.status.value.endswith("· optimizer: AdamW (default)")
    default.run()
    saved = default.wait()
    assert saved is not None

    shown = LRWidget.from_result(saved)
    assert shown.controls.status.value.endswith("· optimizer: AdamW")  # from its metadata
    shown.close()

    # A sweep through a framework object says so, from its metadata too.
    saved.metadata.update(optimizer="fastai Adam", framework="fastai Learner")
    shown = LRWidget.from_result(saved)
    status = shown.controls.status.value
    assert status.endswith("· optimizer: fastai Adam, through the fastai Learner")
    shown.close()
