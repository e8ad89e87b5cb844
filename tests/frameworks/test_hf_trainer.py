"""A Hugging Face Trainer swept with what trainer.train() would use, with the real transformers
and accelerate: its loss, loader, optimizer groups, accumulation, clipping; the Trainer and model
left as they were, the LR written to its args, the curve equal to find_lr's by hand."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

from lr_widget import LRWidget, find_lr
from lr_widget.frameworks import adapt
from tests.helpers import assert_restored, assert_trees_equal, capture


class Tokens(Dataset[dict[str, torch.Tensor]]):
    """256 random token sequences labelled by their first token."""

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, 64, (256, 16), generator=generator)
        self.labels = (self.ids[:, 0] > 31).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


def make_trainer(tmp_path: Path, **arguments: Any) -> Trainer:
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=32, num_labels=2,
    )  # fmt: skip
    args = TrainingArguments(
        str(tmp_path / "out"), per_device_train_batch_size=16, gradient_accumulation_steps=2,
        weight_decay=0.01, report_to=[], use_cpu=True, **arguments,
    )  # fmt: skip
    return Trainer(model=BertForSequenceClassification(config), args=args, train_dataset=Tokens())


def test_a_sweep_through_a_trainer_leaves_it_as_it_was_and_matches_find_lr_by_hand(
    tmp_path: Path,
) -> None:
    trainer = make_trainer(tmp_path)
    model = trainer.model
    before = capture(model)
    args_before = copy.deepcopy(trainer.args.to_dict())
    registered = len(trainer.accelerator._dataloaders)
    result = find_lr(trainer, num_steps=30, update_attr=True)
    assert result.metadata["framework"] == "Hugging Face Trainer"
    assert result.metadata["parameter_groups"] == 2  # create_optimizer's decay / no-decay groups
    assert result.settings["accumulation_steps"] == 2
    assert result.settings["max_grad_norm"] == 1.0
    assert result.metadata["effective_batch_size"] == 32
    assert_restored(before, model)
    assert trainer.optimizer is None
    assert trainer.lr_scheduler is None
    assert len(trainer.accelerator._dataloaders) == registered
    assert trainer.args.learning_rate == result.suggestion.lr
    args_after = trainer.args.to_dict()
    args_after["learning_rate"] = args_before["learning_rate"]
    assert args_after == args_before  # nothing else in the arguments moved

    decay = set(trainer.get_decay_parameter_names(model))
    groups = [
        {"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0},
    ]
    by_hand = find_lr(
        model, trainer.get_train_dataloader().base_dataloader,
        optimizer=torch.optim.AdamW(groups, lr=5e-5), num_steps=30, accumulation_steps=2,
        max_grad_norm=1.0,
    )  # fmt: skip
    assert result.lrs == by_hand.lrs
    np.testing.assert_allclose(result.losses, by_hand.losses, rtol=1e-5)


def test_a_trainer_mid_training_has_its_optimizer_and_scheduler_restored(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    model = trainer.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scheduler = torch.optim.lr_scheduler.LinearLR(optimizer, total_iters=100)
    trainer.optimizer, trainer.lr_scheduler = optimizer, scheduler
    loader = trainer.get_train_dataloader()
    for step, batch in enumerate(loader):  # a few real steps: moments and a moved schedule
        trainer.compute_loss(model, batch).backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        if step == 3:
            break
    before = capture(model, optimizer)
    scheduler_before = copy.deepcopy(scheduler.state_dict())
    result = find_lr(trainer, num_steps=12)
    assert result.metadata["scheduler"] == "LinearLR"
    assert_restored(before, model, optimizer)
    assert_trees_equal(scheduler_before, scheduler.state_dict(), "scheduler")
    assert trainer.optimizer is optimizer
    # Asked to, the LR goes to the arguments and to the optimizer the Trainer already holds.
    result = find_lr(trainer, num_steps=12, update_attr=True)
    assert trainer.args.learning_rate == result.suggestion.lr
    assert optimizer.param_groups[0]["lr"] == pytest.approx(result.suggestion.lr)


def test_mixed_precision_and_clipping_come_from_the_trainers_arguments(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, bf16=True, max_grad_norm=0.0)
    options = adapt(trainer, None, None, None, {}).options
    assert options["amp_dtype"] == "bfloat16"
    assert options["max_grad_norm"] is None  # 0 turns clipping off in transformers
    # What the caller passes wins over what the Trainer implies.
    assert (
        adapt(trainer, None, None, None, {"accumulation_steps": 1}).options["accumulation_steps"]
        == 1
    )


def test_the_widget_on_a_trainer(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path)
    widget = LRWidget.from_hf_trainer(trainer, update_attr=True, autostart=False, num_steps=10)
    try:
        assert widget.run()
        result = widget.wait()
        picked = widget.select(result.lrs[4])
        assert trainer.args.learning_rate == picked
    finally:
        widget.close()
    with pytest.raises(TypeError, match=r"from_hf_trainer needs a transformers.Trainer"):
        LRWidget.from_hf_trainer(torch.nn.Linear(2, 1))
