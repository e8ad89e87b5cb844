"""Small seeded models, data and exact-state comparisons shared by the tests."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def make_classifier(seed: int = 0, inputs: int = 4, classes: int = 3) -> torch.nn.Module:
    """A small MLP with BatchNorm (buffers) and Dropout (consumes the RNG)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(inputs, 16),
        torch.nn.BatchNorm1d(16),
        torch.nn.ReLU(),
        torch.nn.Dropout(0.1),
        torch.nn.Linear(16, classes),
    )


def make_batches(
    seed: int = 0, count: int = 8, size: int = 32, inputs: int = 4, classes: int = 3
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` (x, y) batches of a learnable classification problem."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.randn(inputs, classes, generator=generator)
    batches = []
    for _ in range(count):
        x = torch.randn(size, inputs, generator=generator)
        batches.append((x, (x @ weights).argmax(dim=1)))
    return batches


def warm_optimizer(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, steps: int = 3
) -> None:
    """Take a few real steps so the optimizer has non-trivial state (momentum, Adam moments)."""
    for x, y in make_batches(seed=99, count=steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()


@dataclass
class FullState:
    """Everything a range test may touch, deep-copied for exact comparison."""

    model: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    modes: list[bool]
    optimizer: dict[str, Any] | None
    torch_rng: torch.Tensor
    numpy_rng: Any
    python_rng: Any


def capture(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> FullState:
    return FullState(
        model={k: v.detach().clone() for k, v in model.state_dict().items()},
        grads={
            name: None if p.grad is None else p.grad.detach().clone()
            for name, p in model.named_parameters()
        },
        modes=[m.training for m in model.modules()],
        optimizer=copy.deepcopy(optimizer.state_dict()) if optimizer is not None else None,
        torch_rng=torch.get_rng_state().clone(),
        numpy_rng=np.random.get_state(),
        python_rng=random.getstate(),
    )


def assert_trees_equal(expected: Any, actual: Any, path: str = "") -> None:
    """Bit-exact comparison of nested dicts/lists of tensors and plain values."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), path
        assert expected.dtype == actual.dtype, path
        assert expected.shape == actual.shape, path
        assert torch.equal(expected, actual), f"tensor differs at {path}"
    elif isinstance(expected, dict):
        assert set(expected) == set(actual), f"keys differ at {path}"
        for key in expected:
            assert_trees_equal(expected[key], actual[key], f"{path}/{key}")
    elif isinstance(expected, (list, tuple)):
        assert len(expected) == len(actual), path
        for index, (a, b) in enumerate(zip(expected, actual, strict=True)):
            assert_trees_equal(a, b, f"{path}[{index}]")
    elif isinstance(expected, np.ndarray):
        assert np.array_equal(expected, actual), path
    else:
        assert expected == actual, f"{path}: {expected!r} != {actual!r}"


def assert_restored(
    before: FullState, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Assert that model, grads, modes, optimizer and RNG streams equal ``before`` bit for bit."""
    after = capture(model, optimizer)
    assert_trees_equal(before.model, after.model, "model")
    assert_trees_equal(before.grads, after.grads, "grads")
    assert before.modes == after.modes
    if optimizer is not None:
        assert_trees_equal(before.optimizer, after.optimizer, "optimizer")
    assert torch.equal(before.torch_rng, after.torch_rng), "torch RNG differs"
    assert_trees_equal(list(before.numpy_rng), list(after.numpy_rng), "numpy RNG")
    assert before.python_rng == after.python_rng, "python RNG differs"
