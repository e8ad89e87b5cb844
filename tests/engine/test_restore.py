"""The range test leaves no trace: every exit path restores model, optimizer and RNG exactly."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from lr_widget.engine.sweep import LRFinder
from lr_widget.find import find_lr
from lr_widget.results.range_test import StopReason
from tests.helpers import assert_restored, capture, make_batches, make_classifier, warm_optimizer

OPTIMIZERS: dict[str, Callable[[torch.nn.Module], torch.optim.Optimizer]] = {
    "sgd_momentum": lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9),
    "adamw": lambda m: torch.optim.AdamW(m.parameters(), lr=1e-3, weight_decay=0.05),
}


class BoomError(RuntimeError):
    """An error raised by user code in the middle of a sweep."""


def failing_loss_at(step: int, error: BaseException) -> Callable[[Any, Any], torch.Tensor]:
    calls = {"n": 0}

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] > step:
            raise error
        return F.cross_entropy(output, target)

    return loss_fn


def nan_loss_at(step: int) -> Callable[[Any, Any], torch.Tensor]:
    calls = {"n": 0}

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = F.cross_entropy(output, target)
        return loss * float("nan") if calls["n"] > step else loss

    return loss_fn


def run_exit_path(path: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> Any:
    data = make_batches()
    if path == "completed":
        return find_lr(model, data, None, optimizer, end_lr=1e-2, num_steps=12)
    if path == "diverged":
        return find_lr(model, data, None, optimizer, start_lr=1e-3, end_lr=1e3, num_steps=60)
    if path == "stopped":
        return find_lr(model, data, None, optimizer, num_steps=30, callback=lambda e: e.step == 4)
    if path == "non-finite loss":
        return find_lr(model, data, nan_loss_at(5), optimizer, num_steps=30)
    if path == "error":
        return find_lr(model, data, failing_loss_at(5, BoomError("user code failed")), optimizer)
    if path == "KeyboardInterrupt":
        return find_lr(model, data, failing_loss_at(5, KeyboardInterrupt()), optimizer)
    raise AssertionError(path)


@pytest.mark.parametrize("optimizer_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize(
    "path",
    ["completed", "diverged", "stopped", "non-finite loss", "error", "KeyboardInterrupt"],
)
def test_every_exit_path_restores_model_optimizer_and_rng_bit_exactly(
    path: str, optimizer_name: str
) -> None:
    model = make_classifier()
    optimizer = OPTIMIZERS[optimizer_name](model)
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    if path == "error":
        with pytest.raises(BoomError):
            run_exit_path(path, model, optimizer)
    elif path == "KeyboardInterrupt":
        with pytest.raises(KeyboardInterrupt):
            run_exit_path(path, model, optimizer)
    else:
        result = run_exit_path(path, model, optimizer)
        assert result.stop_reason == StopReason(path)
    assert_restored(before, model, optimizer)


def test_error_is_recorded_on_the_result_and_raised() -> None:
    model = make_classifier()
    finder = LRFinder(model, make_batches(), failing_loss_at(3, BoomError("bad batch")))
    with pytest.raises(BoomError, match="bad batch"):
        finder.run()
    assert finder.result is not None
    assert finder.result.stop_reason is StopReason.ERROR
    assert finder.result.error == "BoomError: bad batch"
    assert finder.result.num_steps == 3
    assert not finder.running


def test_error_in_callback_restores_and_is_recorded() -> None:
    model = make_classifier()
    before = capture(model)

    def callback(event: Any) -> None:
        if event.step == 2:
            raise BoomError("callback failed")

    finder = LRFinder(model, make_batches())
    with pytest.raises(BoomError):
        finder.run(callback=callback)
    assert finder.result is not None
    assert finder.result.error == "BoomError: callback failed"
    assert_restored(before, model)


def test_closing_the_step_iterator_early_restores() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = capture(model, optimizer)
    finder = LRFinder(model, make_batches(), optimizer=optimizer, num_steps=50)
    steps = finder.steps()
    for event in steps:
        if event.step == 3:
            break
    steps.close()
    assert finder.result is not None
    assert finder.result.stop_reason is StopReason.STOPPED
    assert_restored(before, model, optimizer)


def test_stop_event_from_another_thread_stops_and_restores() -> None:
    model = make_classifier()
    before = capture(model)
    stop = threading.Event()
    reached = threading.Event()

    def callback(event: Any) -> None:
        if event.step == 2:
            reached.set()
            stop.wait(timeout=10)

    worker_result: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: worker_result.setdefault(
            "result",
            find_lr(model, make_batches(), num_steps=80, callback=callback, stop_event=stop),
        )
    )
    thread.start()
    assert reached.wait(timeout=30)
    stop.set()
    thread.join(timeout=30)
    result = worker_result["result"]
    assert result.stop_reason is StopReason.STOPPED
    assert result.num_steps == 3
    assert_restored(before, model)


def test_existing_gradients_and_module_modes_are_restored() -> None:
    model = make_classifier()
    x, y = make_batches(count=1)[0]
    F.cross_entropy(model(x), y).backward()
    model.eval()
    model[1].train()  # a mix of modes, as when only some layers are frozen
    before = capture(model)
    assert any(grad is not None for grad in before.grads.values())
    find_lr(model, make_batches(), num_steps=10, end_lr=1e-2)
    assert_restored(before, model)


def test_grad_scaler_state_is_restored() -> None:
    model = make_classifier()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=2)
    scale_before = scaler.get_scale()
    state_before = scaler.state_dict()
    result = find_lr(model, make_batches(), num_steps=10, end_lr=1e-2, grad_scaler=scaler)
    assert result.metadata["grad_scaler"] is True
    assert scaler.get_scale() == scale_before
    assert scaler.state_dict() == state_before


def test_fresh_default_optimizer_leaves_model_exactly_as_it_was() -> None:
    model = make_classifier()
    before = capture(model)
    result = find_lr(model, make_batches(), num_steps=40)
    assert result.num_steps >= 2
    assert_restored(before, model)


def test_snapshot_lives_in_host_memory_once() -> None:
    model = make_classifier()
    optimizer = torch.optim.AdamW(model.parameters())
    warm_optimizer(model, optimizer)
    result = find_lr(model, make_batches(), None, optimizer, num_steps=5, end_lr=1e-3)
    parameter_bytes = sum(t.numel() * t.element_size() for t in model.parameters())
    buffer_bytes = sum(t.numel() * t.element_size() for t in model.buffers())
    moment_bytes = 2 * parameter_bytes  # exp_avg and exp_avg_sq
    step_bytes = sum(
        state["step"].numel() * state["step"].element_size() for state in optimizer.state.values()
    )
    grad_bytes = parameter_bytes  # warm_optimizer leaves the last gradients in place
    expected = parameter_bytes + buffer_bytes + moment_bytes + step_bytes + grad_bytes
    assert result.metadata["snapshot_bytes"] == expected
