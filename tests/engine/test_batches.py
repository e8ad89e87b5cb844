"""Batch formats and loss inference: what the engine reads without help, and what it refuses."""

from __future__ import annotations

import math
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from lr_widget.engine.batches import LossComputer, infer_loss_fn, move_to_device
from lr_widget.find import find_lr
from tests.helpers import make_batches, make_classifier

QUIET = {"num_steps": 4, "end_lr": 1e-3, "diverge_factor": math.inf}


@dataclass
class ModelOutput:
    """Shaped like a Hugging Face ModelOutput: a loss and logits as attributes."""

    loss: torch.Tensor | None
    logits: torch.Tensor


class TinyLanguageModel(torch.nn.Module):
    """Dict batches in, its own loss out, as a Hugging Face causal LM does."""

    def __init__(self, vocab: int = 11) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(vocab, 8)
        self.head = torch.nn.Linear(8, vocab)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> ModelOutput:
        logits = self.head(self.embed(input_ids)) * attention_mask.unsqueeze(-1)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return ModelOutput(loss=loss, logits=logits)


def lm_batches(count: int = 4) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(count):
        ids = torch.randint(0, 11, (4, 6), generator=generator)
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    return batches


def test_dict_batch_model_with_its_own_loss_needs_no_loss_fn() -> None:
    model = TinyLanguageModel()
    result = find_lr(model, lm_batches(), **QUIET)
    assert result.num_steps == 4
    assert result.metadata["loss"] == "the model's own loss"
    expected = model(**lm_batches()[0]).loss
    assert expected is not None
    assert result.losses[0] == pytest.approx(float(expected.detach()), rel=1e-6)


def test_dict_output_with_a_loss_key_is_used() -> None:
    class DictLoss(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
            logits = self.linear(x)
            return {"loss": F.cross_entropy(logits, y), "logits": logits}

    data = [{"x": x, "y": y} for x, y in make_batches()]
    result = find_lr(DictLoss(), data, **QUIET)
    assert result.metadata["loss"] == "the model's own loss"


def test_dict_batch_without_labels_parameter_gets_target_split_off() -> None:
    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 3)

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            return self.linear(features)

    data = [{"features": x, "labels": y} for x, y in make_batches()]
    result = find_lr(Plain(), data, **QUIET)
    assert result.metadata["loss"].startswith("cross_entropy (inferred")


def test_several_inputs_then_target() -> None:
    class TwoInputs(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(4, 3)
            self.b = torch.nn.Linear(2, 3)

        def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
            return self.a(x1) + self.b(x2)

    data = [(x, x[:, :2], y) for x, y in make_batches()]
    result = find_lr(TwoInputs(), data, **QUIET)
    assert result.num_steps == 4


def test_namedtuple_batches_are_read_as_tuples() -> None:
    Batch = namedtuple("Batch", ["x", "y"])
    data = [Batch(x, y) for x, y in make_batches()]
    assert find_lr(make_classifier(), data, **QUIET).num_steps == 4


def test_cross_entropy_is_inferred_for_integer_targets() -> None:
    loss_fn, name = infer_loss_fn(torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1]))
    assert name.startswith("cross_entropy")
    logits, target = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
    assert loss_fn(logits, target) == pytest.approx(float(F.cross_entropy(logits, target)))


def test_cross_entropy_is_inferred_per_token_for_language_model_logits() -> None:
    logits, target = torch.randn(2, 7, 11), torch.randint(0, 11, (2, 7))
    loss_fn, name = infer_loss_fn(logits, target)
    assert "per token" in name
    expected = F.cross_entropy(logits.reshape(-1, 11), target.reshape(-1))
    assert float(loss_fn(logits, target)) == pytest.approx(float(expected))


def test_cross_entropy_is_inferred_per_position_for_segmentation_maps() -> None:
    logits, target = torch.randn(2, 4, 5, 5), torch.randint(0, 4, (2, 5, 5))
    loss_fn, _ = infer_loss_fn(logits, target)
    assert float(loss_fn(logits, target)) == pytest.approx(float(F.cross_entropy(logits, target)))


def test_mse_is_inferred_for_float_targets_of_the_output_shape() -> None:
    loss_fn, name = infer_loss_fn(torch.randn(5, 2), torch.randn(5, 2))
    assert name.startswith("mse_loss")
    assert loss_fn is F.mse_loss


def test_float_targets_of_another_shape_cannot_be_inferred() -> None:
    with pytest.raises(
        ValueError, match=r"loss_fn is None and cannot be inferred.*\(5,\).*\(5, 1\)"
    ):
        infer_loss_fn(torch.randn(5, 1), torch.randn(5))


def test_unreadable_batch_asks_for_step_fn() -> None:
    with pytest.raises(TypeError, match="step_fn"):
        find_lr(make_classifier(), ["not a batch"] * 3, **QUIET)


def test_batch_without_target_and_model_without_loss_asks_for_step_fn() -> None:
    data = [x for x, _ in make_batches()]
    with pytest.raises(ValueError, match=r"cannot find a loss.*step_fn"):
        find_lr(make_classifier(), data, **QUIET)


def test_step_fn_handles_any_batch_format() -> None:
    data = [{"nested": {"x": x}, "target": [y]} for x, y in make_batches()]

    def step_fn(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        return F.cross_entropy(model(batch["nested"]["x"]), batch["target"][0])

    assert find_lr(make_classifier(), data, step_fn=step_fn, **QUIET).num_steps == 4


def test_one_shot_iterator_that_runs_out_gets_a_clear_error() -> None:
    data = iter(make_batches(count=2))
    with pytest.raises(
        ValueError, match="train_data ran out after 2 batches and cannot be restarted"
    ):
        find_lr(make_classifier(), data, **QUIET)


def test_move_to_device_keeps_structure() -> None:
    Batch = namedtuple("Batch", ["x", "y"])
    batch = {"a": [torch.ones(2)], "b": Batch(torch.zeros(1), 3), "c": "text"}
    moved = move_to_device(batch, torch.device("cpu"))
    assert isinstance(moved["b"], Batch)
    assert moved["b"].y == 3
    assert moved["c"] == "text"
    assert torch.equal(moved["a"][0], torch.ones(2))


def test_move_to_device_moves_tensors_to_another_device() -> None:
    moved = move_to_device((torch.ones(2), {"y": torch.zeros(1)}), torch.device("meta"))
    assert moved[0].device.type == "meta"
    assert moved[1]["y"].device.type == "meta"


def test_loss_must_be_a_scalar() -> None:
    computer = LossComputer(
        make_classifier(), loss_fn=lambda out, y: F.cross_entropy(out, y, reduction="none")
    )
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar.*shape \(32,\)"):
        computer(make_batches()[0])
