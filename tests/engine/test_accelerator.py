"""The accelerator paths: lagged loss reads, one device read per step, AMP, pinned memory.

The engine's device code is device-agnostic, so most of it is proved here on the CPU: a lag forced
on the CPU must record the very curve of a sweep without lag, and the engine must read the device
once per step. The tests that need CUDA itself (pinned snapshots, device memory, CUDA autocast)
skip cleanly without a GPU; ``benchmarks/gpu_check.py`` measures the rest on a real one.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from lr_widget.engine.batches import move_to_device
from lr_widget.engine.recording import StepEvent
from lr_widget.engine.state import TrainingState
from lr_widget.engine.sweep import LRFinder
from lr_widget.find import find_lr
from lr_widget.results.range_test import RangeTestResult, StopReason
from tests.helpers import assert_restored, capture, make_batches, make_classifier, warm_optimizer

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


class CountingSGD(torch.optim.SGD):
    """SGD with momentum that counts the optimizer steps it really took."""

    def __init__(self, params: Any) -> None:
        super().__init__(params, lr=0.1, momentum=0.9)
        self.steps_taken = 0

    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        self.steps_taken += 1
        return super().step(closure)


def nan_from_call(first_nan_call: int) -> Any:
    calls = {"n": 0}

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        loss = F.cross_entropy(output, target)
        return loss * float("nan") if calls["n"] >= first_nan_call else loss

    return loss_fn


EXIT_PATHS: dict[str, dict[str, Any]] = {
    "completed": {"end_lr": 1e-2, "num_steps": 15},
    "diverged": {"start_lr": 1e-3, "end_lr": 1e4, "num_steps": 40},
    "non-finite loss": {"num_steps": 30},
    "stopped": {"num_steps": 30, "callback": lambda event: event.step == 6},
}


def sweep(path: str, lag: int) -> tuple[RangeTestResult, int]:
    """Run one exit path with ``loss_read_lag=lag``; return the result and the steps trained."""
    model = make_classifier()
    optimizer = CountingSGD(model.parameters())
    loss_fn = nan_from_call(8) if path == "non-finite loss" else None
    before = capture(model, optimizer)
    result = find_lr(
        model, make_batches(), loss_fn, optimizer, loss_read_lag=lag, **EXIT_PATHS[path]
    )
    assert_restored(before, model, optimizer)
    return result, optimizer.steps_taken


@pytest.mark.parametrize("lag", [1, 2])
@pytest.mark.parametrize("path", sorted(EXIT_PATHS))
def test_lagged_reads_record_the_same_curve_and_stop_at_most_lag_steps_late(
    path: str, lag: int
) -> None:
    on_time, trained_on_time = sweep(path, lag=0)
    lagged, trained_lagged = sweep(path, lag=lag)
    assert lagged.stop_reason is on_time.stop_reason is StopReason(path)
    assert lagged.lrs == on_time.lrs
    assert lagged.losses == pytest.approx(on_time.losses, rel=0, abs=0, nan_ok=True)
    assert lagged.stop_detail == on_time.stop_detail
    assert len(lagged.timings["step_s"]) == lagged.num_steps
    assert trained_on_time == on_time.num_steps
    assert trained_on_time <= trained_lagged <= trained_on_time + lag


def test_each_event_arrives_lag_steps_after_its_step_was_trained() -> None:
    model = make_classifier()
    optimizer = CountingSGD(model.parameters())
    trained_when_seen: list[int] = []

    def callback(event: StepEvent) -> None:
        trained_when_seen.append(optimizer.steps_taken)

    find_lr(
        model, make_batches(), None, optimizer, num_steps=10, end_lr=1e-3, loss_read_lag=2,
        callback=callback,
    )  # fmt: skip
    assert trained_when_seen == [3, 4, 5, 6, 7, 8, 9, 10, 10, 10]


def test_lagged_sweep_stopped_from_outside_drops_the_steps_not_yet_read() -> None:
    finder = LRFinder(make_classifier(), make_batches(), num_steps=30, loss_read_lag=2)
    steps = finder.steps()
    for event in steps:
        if event.step == 4:
            finder.stop()
    assert finder.result is not None
    assert finder.result.stop_reason is StopReason.STOPPED
    assert finder.result.num_steps == 5
    assert finder.result.stop_detail == "stopped by the caller before step 5"


class DeviceReads:
    """Counts the reads of tensor values into Python (``item``, ``tolist``) made by lr_widget."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        for name in ("item", "tolist"):
            monkeypatch.setattr(torch.Tensor, name, self._counting(getattr(torch.Tensor, name)))

    def _counting(self, read: Any) -> Any:
        def counted(tensor: torch.Tensor) -> Any:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            self.count += caller.startswith("lr_widget")
            return read(tensor)

        return counted


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"batches_per_step": 3},
        {"accumulation_steps": 2, "val_data": make_batches(seed=5)},
        {"loss_read_lag": 2},
        {"grad_scaler": True},
    ],
    ids=["plain", "batches_per_step", "accumulation_and_validation", "lag", "grad_scaler"],
)
def test_the_engine_reads_the_device_once_per_step(
    options: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    reads = DeviceReads(monkeypatch)
    result = find_lr(model, make_batches(), None, optimizer, num_steps=12, end_lr=1e-3, **options)
    assert result.stop_reason is StopReason.COMPLETED
    assert reads.count == 12


def test_fp16_autocast_with_a_grad_scaler_runs_and_restores_exactly() -> None:
    model = make_classifier()
    optimizer = torch.optim.AdamW(model.parameters())
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    dtypes: list[torch.dtype] = []

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        dtypes.append(output.dtype)
        return F.cross_entropy(output.float(), target)

    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    result = find_lr(
        model, make_batches(), loss_fn, optimizer, num_steps=8, end_lr=1e-2,
        amp_dtype="float16", grad_scaler=scaler,
    )  # fmt: skip
    assert set(dtypes) == {torch.float16}
    assert result.num_steps == 8
    assert all(math.isfinite(loss) for loss in result.losses)
    assert scaler.get_scale() == 2.0**8
    assert_restored(before, model, optimizer)


def test_fused_optimizer_under_a_grad_scaler_retries_skipped_steps() -> None:
    """A fused optimizer skips overflowing steps itself; the sweep must notice and retry."""
    model = make_classifier()
    optimizer = torch.optim.AdamW(model.parameters(), fused=True)
    assert getattr(optimizer, "_step_supports_amp_scaling", False)
    calls = {"n": 0}

    def step_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        calls["n"] += 1
        loss = F.cross_entropy(model(batch[0]), batch[1])
        if calls["n"] in (2, 3):  # finite loss, infinite gradients
            return loss + torch.sqrt(model[0].weight[0, 0] * 0.0)
        return loss

    result = find_lr(
        model, make_batches(), None, optimizer, num_steps=5, end_lr=1e-3, step_fn=step_fn,
        grad_scaler=torch.amp.GradScaler("cpu", init_scale=8.0),
    )  # fmt: skip
    assert calls["n"] == 7
    assert result.num_steps == 5


def test_non_finite_loss_under_a_grad_scaler_stops_at_that_step() -> None:
    result = find_lr(
        make_classifier(), make_batches(), nan_from_call(4), num_steps=30, grad_scaler=True
    )
    assert result.stop_reason is StopReason.NON_FINITE
    assert result.num_steps == 4
    assert math.isnan(result.losses[-1])


def test_grad_scaler_hook_is_removed_after_the_sweep() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    find_lr(model, make_batches(), None, optimizer, num_steps=4, end_lr=1e-3, grad_scaler=True)
    assert not optimizer._optimizer_step_post_hooks


def test_pinned_batches_are_moved_without_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    moves: list[bool] = []
    original_to = torch.Tensor.to

    def to(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        moves.append(kwargs.get("non_blocking", False))
        return original_to(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    monkeypatch.setattr(torch.Tensor, "is_pinned", lambda tensor: True)  # as from pin_memory=True
    moved = move_to_device({"x": torch.ones(2), "y": [torch.zeros(1)]}, torch.device("meta"))
    assert moved["x"].device.type == "meta"
    assert moves == [True, True]


# -- on a real CUDA device --------------------------------------------------------------------
def cuda_classifier() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = make_classifier().cuda()
    optimizer = torch.optim.AdamW(model.parameters())
    return model, optimizer


def pinned_batches(count: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Host batches in pinned memory, as a DataLoader with ``pin_memory=True`` yields them."""
    return [(x.pin_memory(), y.pin_memory()) for x, y in make_batches(count=count)]


@needs_cuda
def test_cuda_snapshot_lives_in_pinned_host_memory() -> None:
    model, optimizer = cuda_classifier()
    warm_optimizer_on_cuda(model, optimizer)
    state = TrainingState.capture(model, optimizer)
    host = [*state._tensor_values.values(), *state._grads.values()]
    assert all(tensor.device.type == "cpu" and tensor.is_pinned() for tensor in host)


@needs_cuda
def test_cuda_sweep_restores_exactly_and_leaves_device_memory_as_it_was() -> None:
    model, optimizer = cuda_classifier()
    warm_optimizer_on_cuda(model, optimizer)
    before = capture(model, optimizer)
    batches = pinned_batches()
    torch.cuda.synchronize()
    allocated = torch.cuda.memory_allocated()
    pinned = torch.cuda.host_memory_stats().get("allocated_bytes.current", 0)
    result = find_lr(model, batches, None, optimizer, num_steps=20)
    assert result.metadata["loss_read_lag"] == 1
    assert torch.cuda.memory_allocated() == allocated
    assert torch.cuda.host_memory_stats().get("allocated_bytes.current", 0) <= pinned
    assert_restored(before, model, optimizer)


@needs_cuda
@pytest.mark.parametrize(("dtype", "scaler"), [("bfloat16", False), ("float16", True)])
def test_cuda_autocast_sweeps_and_restores(dtype: str, scaler: bool) -> None:
    model, optimizer = cuda_classifier()
    before = capture(model, optimizer)
    result = find_lr(
        model, pinned_batches(), None, optimizer, num_steps=10, end_lr=1e-2,
        amp_dtype=dtype, grad_scaler=scaler,
    )  # fmt: skip
    assert result.num_steps == 10
    assert_restored(before, model, optimizer)


def warm_optimizer_on_cuda(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    for x, y in make_batches(seed=99, count=3):
        optimizer.zero_grad()
        F.cross_entropy(model(x.cuda()), y.cuda()).backward()
        optimizer.step()


# -- the device check script, smoke-run on the CPU ----------------------------------------------
def test_device_check_runs_on_the_cpu_and_reports_an_exact_restore(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import gpu_check

    assert gpu_check.main(["--device", "cpu", "--steps", "4", "--repeats", "1"]) == 0
    report = capsys.readouterr().out
    assert "ratio" in report
    assert "RESTORE: bit-exact after all 1 sweeps" in report


def test_device_check_fails_when_the_restore_is_not_exact(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import gpu_check

    monkeypatch.setattr(TrainingState, "restore", lambda state, keep=True: None)
    assert gpu_check.main(["--device", "cpu", "--steps", "4", "--repeats", "1"]) == 1
    assert "RESTORE: FAIL" in capsys.readouterr().out
