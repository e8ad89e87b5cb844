"""Running, stopping and closing: the sweep runs in a thread and always restores the model."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from lr_widget.results.range_test import StopReason
from lr_widget.widget.controls import ERROR_COLOR
from tests.helpers import assert_restored, capture, warm_optimizer

from .frontend import click, move
from .scripted import ScriptedStep, Setup


def test_run_returns_at_once_and_the_sweep_runs_in_another_thread(setup: Setup) -> None:
    step = ScriptedStep(hold_at=0)
    w = setup.widget(step)
    assert w.run() is True  # returns while the sweep is held at its first step
    step.wait_until_held()
    assert w.running
    step.release()
    result = w.wait()
    assert result is not None
    assert result.num_steps == 20
    assert not w.running
    assert w.controls.status.value.startswith("completed")


def test_the_run_button_starts_a_sweep(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    click(w.controls.run_button)
    result = w.wait()
    assert result is not None
    assert result.stop_reason is StopReason.COMPLETED


def test_stop_mid_sweep_restores_weights_bit_exactly(setup: Setup) -> None:
    warm_optimizer(setup.model, setup.optimizer)  # momentum buffers to restore too
    before = capture(setup.model, setup.optimizer)
    step = ScriptedStep(hold_at=5)
    w = setup.widget(step)
    w.run()
    step.wait_until_held()
    click(w.controls.stop_button)
    step.release()
    result = w.wait()

    assert result is not None
    assert result.stop_reason is StopReason.STOPPED
    assert result.num_steps == 6  # steps 0..5 ran; the stop was seen before step 6
    assert "stopped" in w.controls.status.value
    assert_restored(before, setup.model, setup.optimizer)
    assert not w.controls.run_button.disabled
    assert w.controls.stop_button.disabled


def test_a_slider_change_is_used_by_the_next_run(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    move(w.controls.start_lr, 1e-05 / 4)
    move(w.controls.end_lr, 1e-02)
    move(w.controls.num_steps, 15)
    w.run()
    result = w.wait()
    assert result is not None
    assert result.lrs[0] == 1e-05 / 4
    assert result.lrs[-1] == 1e-02
    assert result.num_steps == 15
    assert w.plot.x_scale.min == 1e-05 / 4
    assert w.plot.x_scale.max == 1e-02


def test_a_failing_sweep_shows_its_error_in_red_and_keeps_it(setup: Setup) -> None:
    before = capture(setup.model, setup.optimizer)
    w = setup.widget(ScriptedStep(raise_at=3))
    w.run()
    with pytest.raises(RuntimeError, match="bad batch at step 3"):
        w.wait()

    status = w.controls.status.value
    assert "RuntimeError: bad batch at step 3" in status
    assert ERROR_COLOR in status
    assert "color" in status
    assert w.result is not None
    assert w.result.error == "RuntimeError: bad batch at step 3"
    assert w.result.stop_reason is StopReason.ERROR
    assert isinstance(w.error, RuntimeError)
    assert_restored(before, setup.model, setup.optimizer)
    assert not w.controls.run_button.disabled  # the user can fix things and run again


def test_invalid_slider_settings_are_shown_and_start_nothing(setup: Setup) -> None:
    step = ScriptedStep()
    w = setup.widget(step)
    move(w.controls.start_lr, 1.0)  # above end_lr
    click(w.controls.run_button)
    assert "start_lr must be smaller than end_lr" in w.controls.status.value
    assert ERROR_COLOR in w.controls.status.value
    assert not w.running
    assert step.calls == 0


def test_run_during_a_sweep_is_ignored(setup: Setup) -> None:
    step = ScriptedStep(hold_at=4)
    w = setup.widget(step)
    w.run()
    step.wait_until_held()
    threads = threading.active_count()

    assert w.controls.run_button.disabled
    click(w.controls.run_button)  # a click that raced the disabling
    assert w.run() is False
    assert threading.active_count() == threads
    step.release()
    result = w.wait()

    assert w.error is None
    assert result is not None
    assert result.num_steps == 20
    assert step.calls == 20  # one sweep only


def test_close_stops_the_sweep_and_waits_for_its_end(setup: Setup) -> None:
    before = capture(setup.model, setup.optimizer)
    step = ScriptedStep(hold_at=3)
    w = setup.widget(step)

    # close() asks the sweep to stop, then disables Stop: only then may the held step end.
    def release_when_stop_disables(change: dict[str, Any]) -> None:
        if change["new"]:
            step.release()

    w.controls.stop_button.observe(release_when_stop_disables, "disabled")
    w.run()
    step.wait_until_held()
    w.close()

    assert not w.session.thread_alive
    assert w.result is not None
    assert w.result.stop_reason is StopReason.STOPPED
    assert w.result.num_steps == 4
    assert_restored(before, setup.model, setup.optimizer)
    assert w.comm is None
    assert w.plot.figure.comm is None
    with pytest.raises(RuntimeError, match="closed"):
        w.run()


def test_stop_before_the_engine_starts_is_not_lost(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    w.run()
    w.stop()  # may arrive before the thread reaches the engine's loop
    result = w.wait()
    assert result is not None
    assert result.stop_reason is StopReason.STOPPED
    assert result.num_steps < 20


def test_progress_shows_step_lr_loss_and_time_left(setup: Setup) -> None:
    step = ScriptedStep(hold_at=7)
    w = setup.widget(step, update_interval_s=0)
    w.run()
    step.wait_until_held()
    text = w.controls.progress_text.value
    assert w.controls.progress.value == 7
    assert w.controls.progress.max == 20
    assert text.startswith("step 7/20 · lr ")
    assert " · loss " in text
    assert text.endswith(" left")
    step.release()
    w.wait()
    assert w.controls.progress.value == 20


def test_the_progress_bar_is_full_once_a_sweep_ends_early(setup: Setup) -> None:
    """A divergence at step 12 of 20 ends the sweep: the bar says it is over, not 60% done."""
    losses = [1.0] * 12 + [100.0] * 8
    w = setup.widget(ScriptedStep(losses=losses), num_steps=20, beta=0.0)
    w.run()
    result = w.wait()
    assert result is not None
    assert result.stop_reason is StopReason.DIVERGED
    assert result.num_steps < 20
    assert w.controls.progress.value == w.controls.progress.max
    assert w.controls.progress_text.value.startswith("diverged")
