"""The built-in demo: reproducible per seed, and a range test on it shows every phase."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lr_widget.curves.smoothing import debiased_ema
from lr_widget.demo import Demo, demo_data, demo_model, make_demo
from lr_widget.engine.schedules import lr_schedule


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def _same_state(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(
        torch.equal(first[name], second[name]) for name in first
    )


def _batches(demo: Demo, epochs: int = 2) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x, y) for _ in range(epochs) for x, y in demo.train_loader]


def _same_batches(
    first: list[tuple[torch.Tensor, torch.Tensor]], second: list[tuple[torch.Tensor, torch.Tensor]]
) -> bool:
    return len(first) == len(second) and all(
        torch.equal(x1, x2) and torch.equal(y1, y2)
        for (x1, y1), (x2, y2) in zip(first, second, strict=True)
    )


def _range_test(demo: Demo) -> tuple[np.ndarray, np.ndarray]:
    """The reference sweep: AdamW defaults, LR 1e-7 -> 10 over 100 steps, one batch per step."""
    optimizer = torch.optim.AdamW(demo.model.parameters())
    lrs = lr_schedule(100, 1e-7, 10.0)
    raw_losses = []
    batches = iter(demo.train_loader)
    for lr in lrs:
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        try:
            inputs, targets = next(batches)
        except StopIteration:
            batches = iter(demo.train_loader)
            inputs, targets = next(batches)
        optimizer.zero_grad()
        loss = demo.loss_fn(demo.model(inputs), targets)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        raw_losses.append(loss.item())
    return lrs, debiased_ema(raw_losses, beta=0.98)


@torch.no_grad()
def _val_loss(demo: Demo) -> float:
    demo.model.eval()
    total, count = 0.0, 0
    for inputs, targets in demo.val_loader:
        total += demo.loss_fn(demo.model(inputs), targets).item() * len(targets)
        count += len(targets)
    demo.model.train()
    return total / count


def test_same_seed_gives_same_weights() -> None:
    assert _same_state(_state(demo_model(0)), _state(demo_model(0)))
    assert _same_state(_state(make_demo(0).model), _state(demo_model(0)))


def test_different_seeds_give_different_weights() -> None:
    assert not _same_state(_state(demo_model(0)), _state(demo_model(1)))


def test_same_seed_gives_same_batches_in_the_same_order() -> None:
    assert _same_batches(_batches(make_demo(0)), _batches(make_demo(0)))


def test_different_seeds_give_different_batches() -> None:
    assert not _same_batches(_batches(make_demo(0)), _batches(make_demo(1)))


def test_epochs_are_reshuffled() -> None:
    demo = make_demo(0)
    first_epoch, second_epoch = list(demo.train_loader), list(demo.train_loader)
    assert not _same_batches(first_epoch, second_epoch)


def test_seeding_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    make_demo(5)
    assert torch.equal(torch.rand(3), expected)


def test_data_is_split_three_to_one_with_float_inputs_and_class_targets() -> None:
    train, val = demo_data(0, num_samples=4096)
    assert (len(train), len(val)) == (3072, 1024)
    inputs, targets = train.tensors
    assert inputs.shape == (3072, 2)
    assert inputs.dtype == torch.float32
    assert targets.dtype == torch.int64
    counts = torch.bincount(targets, minlength=3)
    assert counts.tolist() == pytest.approx([1024, 1024, 1024], rel=0.1)


def test_data_depends_only_on_the_seed() -> None:
    first, second, other = demo_data(3, 200), demo_data(3, 200), demo_data(4, 200)
    tensors = [[tensor for part in data for tensor in part.tensors] for data in (first, second)]
    assert all(torch.equal(a, b) for a, b in zip(*tensors, strict=True))
    assert not torch.equal(other[0].tensors[0], first[0].tensors[0])


def test_loaders_cover_the_data_in_full_batches() -> None:
    demo = make_demo(0, num_samples=1000, batch_size=100)
    assert [len(y) for _, y in demo.train_loader] == [100] * 7
    assert sum(len(y) for _, y in demo.val_loader) == 250


def test_description_is_one_line_that_names_task_size_and_model() -> None:
    description = make_demo(0, num_samples=4096).description
    assert "\n" not in description
    assert description.startswith("ring: 3-class")
    assert "4,096 points" in description
    assert "MLP 2-256-256-3" in description


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"seed": 1.5}, "seed must be an integer >= 0, got 1.5"),
        ({"num_samples": 3}, "num_samples must be an integer >= 4, got 3"),
        ({"batch_size": 1}, "batch_size must be an integer >= 2, got 1"),
        ({"batch_size": True}, "batch_size must be an integer >= 2, got True"),
        ({"num_samples": 100, "batch_size": 76}, "at most the 75 training samples"),
    ],
)
def test_bad_arguments_name_the_parameter_and_value(
    arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_demo(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_range_test_has_flat_start_descent_minimum_and_blow_up(seed: int) -> None:
    lrs, smoothed = _range_test(make_demo(seed))
    flat = smoothed[lrs <= 1e-5]
    start = float(np.median(flat))
    assert np.all(np.abs(flat / start - 1) < 0.08), "the start is not flat"
    lowest = int(np.argmin(smoothed))
    assert 1e-3 < lrs[lowest] < 1.0, "the minimum is not between 1e-3 and 1"
    assert smoothed[lowest] < 0.6 * start, "the descent is too shallow"
    at = {decade: smoothed[np.argmin(np.abs(np.log10(lrs) - decade))] for decade in (-4, -3, -2)}
    assert start > at[-4] > at[-3] > at[-2], "the loss does not fall through 1e-4 .. 1e-2"
    assert smoothed[lowest:].max() > 4 * smoothed[lowest], "the loss does not blow up"


@pytest.mark.parametrize("lr", [1e-3, 1e-2])
def test_two_epochs_at_a_descent_lr_halve_the_validation_loss(lr: float) -> None:
    demo = make_demo(0)
    before = _val_loss(demo)
    optimizer = torch.optim.AdamW(demo.model.parameters(), lr=lr)
    for inputs, targets in _batches(demo, epochs=2):
        optimizer.zero_grad()
        demo.loss_fn(demo.model(inputs), targets).backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    assert _val_loss(demo) < 0.5 * before
