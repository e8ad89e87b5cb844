"""Models users really bring: schedulers, frozen layers, compiled, checkpointed, bf16 and sparse
models, loaders with workers, iterable datasets, generators and closure optimizers.

Each test runs a short sweep and checks the model, optimizer (and scheduler, where there is one)
come back bit for bit.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from typing import Any, cast

import pytest
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from lr_widget.find import find_lr
from lr_widget.results.range_test import StopReason
from tests.helpers import (
    assert_restored,
    assert_trees_equal,
    capture,
    make_batches,
    make_classifier,
    warm_optimizer,
)

SWEEP: dict[str, Any] = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 8}


def _warm(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    warm_optimizer(model, optimizer)
    optimizer.zero_grad(set_to_none=True)


# -- LR schedulers --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["step", "one_cycle"])
@pytest.mark.parametrize("pass_scheduler", [True, False])
def test_attached_scheduler_and_initial_lr_come_back_and_keep_working(
    kind: str, pass_scheduler: bool
) -> None:
    def build() -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
        model = make_classifier()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        if kind == "step":
            scheduler: Any = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
        else:
            scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.5, total_steps=20)
        torch.manual_seed(1)  # the same dropout masks for both twins
        for _ in range(3):
            warm_optimizer(model, optimizer, steps=1)
            scheduler.step()
        return model, optimizer, scheduler

    model, optimizer, scheduler = build()
    twin_model, twin_optimizer, twin_scheduler = build()
    before = capture(model, optimizer)
    scheduler_before = copy.deepcopy(scheduler.state_dict())
    initial_lrs = [group["initial_lr"] for group in optimizer.param_groups]
    options = {"scheduler": scheduler} if pass_scheduler else {}
    result = find_lr(model, make_batches(), None, optimizer, **SWEEP, **options)
    assert result.num_steps >= 2
    assert_restored(before, model, optimizer)
    assert_trees_equal(scheduler_before, scheduler.state_dict(), "scheduler")
    assert [group["initial_lr"] for group in optimizer.param_groups] == initial_lrs
    assert vars(optimizer).get("_opt_called") == vars(twin_optimizer).get("_opt_called")
    for trained, trained_optimizer, trained_scheduler in [
        (model, optimizer, scheduler),
        (twin_model, twin_optimizer, twin_scheduler),
    ]:  # the training that follows is the one in which the sweep never happened
        torch.manual_seed(2)
        for _ in range(4):
            warm_optimizer(trained, trained_optimizer, steps=1)
            trained_scheduler.step()
    assert scheduler.get_last_lr() == twin_scheduler.get_last_lr()
    assert_trees_equal(twin_model.state_dict(), model.state_dict(), "trained on")


def test_scheduler_of_another_optimizer_is_refused() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    other = torch.optim.SGD(make_classifier().parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(other, step_size=2)
    with pytest.raises(ValueError, match=r"scheduler drives another optimizer"):
        find_lr(model, make_batches(), None, optimizer, scheduler=scheduler)
    with pytest.raises(TypeError, match=r"scheduler must be a torch\.optim\.lr_scheduler"):
        find_lr(model, make_batches(), None, optimizer, scheduler="cosine")


# -- what the model is ----------------------------------------------------------------------
def test_frozen_layers_stay_frozen_and_untouched() -> None:
    model = make_classifier()
    first = model.get_submodule("0")
    assert isinstance(first, torch.nn.Linear)
    first.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    _warm(model, optimizer)
    before = capture(model, optimizer)
    frozen_weight = first.weight.detach().clone()
    result = find_lr(model, make_batches(), None, optimizer, **SWEEP)
    assert result.metadata["trainable_parameters"] == sum(
        p.numel() for p in model.parameters() if p.requires_grad
    )
    assert first.weight.grad is None
    assert not first.weight.requires_grad
    assert torch.equal(first.weight, frozen_weight)
    assert_restored(before, model, optimizer)


def test_compiled_model_sweeps_and_restores() -> None:
    dynamo = getattr(torch, "_dynamo", None)
    compile_works = (
        hasattr(torch, "compile") and dynamo is not None and dynamo.is_dynamo_supported()
    )
    if not compile_works:
        pytest.skip("torch.compile is not supported on this platform/Python")
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _warm(model, optimizer)
    before = capture(model, optimizer)
    # Dynamo's graph capture and AOT autograd's traced backward, without inductor's C++ build.
    compiled = cast(torch.nn.Module, torch.compile(model, backend="aot_eager"))
    result = find_lr(compiled, make_batches(), None, optimizer, **SWEEP)
    assert result.num_steps >= 2
    assert_restored(before, model, optimizer)


class _Checkpointed(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.block = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.2))
        self.head = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = checkpoint(self.block, x, use_reentrant=False)
        assert isinstance(hidden, torch.Tensor)
        output: torch.Tensor = self.head(torch.relu(hidden))
        return output


def test_gradient_checkpointing_sweeps_and_restores() -> None:
    model = _Checkpointed()
    optimizer = torch.optim.AdamW(model.parameters())
    _warm(model, optimizer)
    before = capture(model, optimizer)
    result = find_lr(model, make_batches(), None, optimizer, **SWEEP)
    assert result.num_steps >= 2
    assert_restored(before, model, optimizer)


def test_bf16_parameters_sweep_and_restore() -> None:
    model = make_classifier().to(torch.bfloat16)
    optimizer = torch.optim.AdamW(model.parameters())
    data = [(x.to(torch.bfloat16), y) for x, y in make_batches()]
    before = capture(model, optimizer)
    result = find_lr(model, data, None, optimizer, **SWEEP)
    assert result.num_steps >= 2
    assert all(isinstance(loss, float) for loss in result.losses)
    assert_restored(before, model, optimizer)
    assert all(p.dtype is torch.bfloat16 for p in model.parameters())


class _SparseBag(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embedding = torch.nn.Embedding(50, 8, sparse=True)
        self.head = torch.nn.Linear(8, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        output: torch.Tensor = self.head(self.embedding(tokens).mean(dim=1))
        return output


def test_sparse_embedding_with_sparse_adam_sweeps_and_restores() -> None:
    model = _SparseBag()
    optimizer = torch.optim.SparseAdam(list(model.embedding.parameters()))
    dense = torch.optim.Adam(model.head.parameters())  # the usual pairing; not swept
    generator = torch.Generator().manual_seed(1)
    data = [
        (torch.randint(0, 50, (16, 5), generator=generator), torch.randint(0, 3, (16,)))
        for _ in range(4)
    ]
    for tokens, labels in data[:2]:  # warm SparseAdam's moments
        optimizer.zero_grad()
        dense.zero_grad()
        F.cross_entropy(model(tokens), labels).backward()  # type: ignore[no-untyped-call]
        optimizer.step()  # type: ignore[no-untyped-call]
    optimizer.zero_grad(set_to_none=True)
    before = capture(model, optimizer)
    result = find_lr(model, data, None, optimizer, **SWEEP)
    assert result.num_steps >= 2
    assert_restored(before, model, optimizer)


# -- where the batches come from ------------------------------------------------------------
def _dataset() -> TensorDataset:
    batches = make_batches(count=8)  # one pass of the sweep's 8 steps: the workers start once
    return TensorDataset(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))


def _loader_with_workers() -> DataLoader[Any]:
    return DataLoader(
        _dataset(), batch_size=32, num_workers=2, multiprocessing_context="spawn"
    )  # not persistent: a persistent one draws its workers' seed only once, at the first pass


@pytest.mark.slow
def test_loader_with_two_workers_from_the_main_and_a_background_thread() -> None:
    model = make_classifier()
    optimizer = torch.optim.AdamW(model.parameters())
    _warm(model, optimizer)
    before = capture(model, optimizer)
    loader = _loader_with_workers()
    main = find_lr(model, loader, None, optimizer, **SWEEP)
    assert_restored(before, model, optimizer)
    results: list[Any] = []
    thread = threading.Thread(  # as the widget runs its sweeps
        target=lambda: results.append(find_lr(model, loader, None, optimizer, **SWEEP))
    )
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert results[0].losses == main.losses
    assert_restored(before, model, optimizer)
    assert main.num_steps >= 2


class _Stream(IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        yield from make_batches(count=3)


def test_iterable_dataset_is_read_again_when_it_runs_out() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _warm(model, optimizer)
    before = capture(model, optimizer)
    result = find_lr(
        model, DataLoader(_Stream(), batch_size=None), None, optimizer, diverge_factor=1e9,
        **{**SWEEP, "num_steps": 7},
    )  # fmt: skip
    assert result.stop_reason is StopReason.COMPLETED  # 7 steps over three passes of 3 batches
    assert_restored(before, model, optimizer)


def test_endless_generator_is_read_in_one_pass() -> None:
    def endless() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield from make_batches(count=2)

    model = make_classifier()
    result = find_lr(model, endless(), diverge_factor=1e9, **SWEEP)
    assert result.stop_reason is StopReason.COMPLETED


def test_generator_that_runs_out_is_a_clear_error_and_changes_nothing() -> None:
    model = make_classifier()
    optimizer = torch.optim.AdamW(model.parameters())
    _warm(model, optimizer)
    before = capture(model, optimizer)
    short = (batch for batch in make_batches(count=3))
    with pytest.raises(ValueError, match=r"train_data ran out after 3 batches and cannot be"):
        find_lr(model, short, None, optimizer, diverge_factor=1e9, **SWEEP)
    assert_restored(before, model, optimizer)


# -- closure optimizers ---------------------------------------------------------------------
def test_lbfgs_steps_through_a_closure_and_restores() -> None:
    model = make_classifier()
    optimizer = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=3, history_size=4)
    batches = make_batches()

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(batches[0][0]), batches[0][1])
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimizer.step(closure)  # type: ignore[no-untyped-call]  # LBFGS history in the saved state
    optimizer.zero_grad(set_to_none=True)
    before = capture(model, optimizer)
    result = find_lr(model, batches, None, optimizer, diverge_factor=1e9, **SWEEP)
    assert result.metadata["closure"] is True
    assert result.num_steps == SWEEP["num_steps"]
    assert_restored(before, model, optimizer)
    # The recorded loss is the closure's first evaluation: the loss before the update. The same
    # weights, buffers and RNG stream as the sweep's first step give the same number.
    first_loss = F.cross_entropy(model(batches[0][0]), batches[0][1])
    assert result.losses[0] == pytest.approx(first_loss.item(), rel=1e-6)


def test_closure_optimizer_with_a_grad_scaler_is_refused_before_anything_changes() -> None:
    model = make_classifier()
    optimizer = torch.optim.LBFGS(model.parameters())
    before = capture(model, optimizer)
    with pytest.raises(ValueError, match=r"grad_scaler cannot be used with LBFGS"):
        find_lr(model, make_batches(), None, optimizer, grad_scaler=torch.amp.GradScaler("cpu"))
    assert_restored(before, model, optimizer)
