"""A LightningModule swept through its own training_step, optimizer, scheduler and data, with
the real Lightning: restored bit for bit, the LR written back, the curve equal to find_lr's on
the same parts built by hand."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchmetrics
from torch.utils.data import DataLoader, TensorDataset

from lr_widget import LRWidget, find_lr
from lr_widget.frameworks import adapt
from lr_widget.frameworks.lightning import first_optimizer
from tests.helpers import assert_restored, assert_trees_equal, capture


class Classifier(pl.LightningModule):
    """A small classifier that logs, keeps a torchmetrics accuracy and has a scheduler."""

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(8, 32),
            torch.nn.BatchNorm1d(32),
            torch.nn.ReLU(),
            torch.nn.Linear(32, 3),
        )
        self.accuracy = torchmetrics.classification.MulticlassAccuracy(num_classes=3)
        self.configured: tuple[torch.optim.Optimizer, Any] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]

    def training_step(self, batch: Any, batch_idx: int) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.accuracy(logits, y)
        self.log("train_loss", loss)
        return {"loss": loss}

    def configure_optimizers(self) -> dict[str, Any]:
        if self.configured is None:  # built once, so a test can warm and inspect it
            optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)
            self.configured = (optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 5))
        optimizer, scheduler = self.configured
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler}}


class Data(pl.LightningDataModule):
    def setup(self, stage: str) -> None:
        generator = torch.Generator().manual_seed(1)
        x = torch.randn(512, 8, generator=generator)
        self.dataset = TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())

    def train_dataloader(self) -> DataLoader[Any]:
        return DataLoader(self.dataset, batch_size=32, shuffle=True)


def warmed() -> Classifier:
    """A module mid-training: a few real steps taken, the optimizer and scheduler stepped."""
    torch.manual_seed(0)
    module = Classifier()
    optimizer, scheduler = module.configure_optimizers()["optimizer"], module.configured[1]  # type: ignore[index]
    data = Data()
    data.setup("fit")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="You are trying to `self.log")  # no Trainer
        for step, batch in enumerate(data.train_dataloader()):
            optimizer.zero_grad()
            module.training_step(batch, step)["loss"].backward()
            optimizer.step()
            scheduler.step()
            if step == 6:
                break
    return module


def test_a_sweep_through_a_lightning_module_restores_it_and_matches_find_lr_by_hand() -> None:
    module = warmed()
    optimizer, scheduler = module.configured  # type: ignore[misc]
    before = capture(module, optimizer)
    scheduler_before = copy.deepcopy(scheduler.state_dict())
    metric_before = {name: getattr(module.accuracy, name).clone() for name in ("tp", "fp")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # self.log without a Trainer stays quiet
        result = find_lr(module, datamodule=Data(), num_steps=40, update_attr=True)
    assert result.num_steps >= 30
    assert result.metadata["framework"] == "LightningModule"
    assert result.metadata["optimizer"] == "AdamW"
    assert result.metadata["scheduler"] == "StepLR"
    assert result.metadata["effective_batch_size"] == 32
    assert_restored(before, module, optimizer)
    assert_trees_equal(scheduler_before, scheduler.state_dict(), "scheduler")
    for name, value in metric_before.items():
        assert torch.equal(getattr(module.accuracy, name), value), name
    assert module.hparams.lr == result.suggestion.lr  # written back, as Lightning's tuner does

    data = Data()
    data.setup("fit")
    by_hand = find_lr(
        module, data.train_dataloader(), F.cross_entropy, optimizer, scheduler=scheduler,
        num_steps=40,
    )  # fmt: skip
    np.testing.assert_allclose(result.losses, by_hand.losses, rtol=1e-6)
    assert result.lrs == by_hand.lrs


def test_every_form_of_configure_optimizers_gives_its_first_optimizer() -> None:
    model = torch.nn.Linear(2, 1)
    first = torch.optim.SGD(model.parameters(), lr=0.1)
    second = torch.optim.Adam(model.parameters())
    steps = torch.optim.lr_scheduler.StepLR(first, 3)
    forms = [
        first,
        [first, second],
        ([first, second], [steps]),
        ([first], [{"scheduler": steps, "interval": "step"}]),
        {"optimizer": first, "lr_scheduler": steps},
        [{"optimizer": first, "lr_scheduler": {"scheduler": steps}}, {"optimizer": second}],
    ]
    for form in forms:
        optimizer, scheduler = first_optimizer(form, model)
        assert optimizer is first, form
        assert scheduler in (None, steps)
    with pytest.raises(ValueError, match="returned no optimizer"):
        first_optimizer(None, model)


def test_the_data_comes_from_one_source_and_bad_combinations_are_refused() -> None:
    module = Classifier()
    with pytest.raises(TypeError, match="needs training data: pass datamodule="):
        find_lr(module, num_steps=5)
    loader = DataLoader(TensorDataset(torch.randn(8, 8), torch.zeros(8, dtype=torch.long)))
    with pytest.raises(TypeError, match="give one source of training data"):
        find_lr(module, loader, datamodule=Data(), num_steps=5)
    # A module that lacks an lr attribute cannot take update_attr: refused before it trains.
    module.hparams.pop("lr")
    before = capture(module)
    with pytest.raises(AttributeError, match="writes the LR to the module's lr or learning_rate"):
        find_lr(module, train_dataloaders=loader, update_attr=True, num_steps=5)
    assert_restored(before, module)


def test_manual_optimization_and_a_skipped_step_get_clear_errors() -> None:
    module = Classifier()
    module.automatic_optimization = False
    loader = DataLoader(TensorDataset(torch.randn(8, 8), torch.zeros(8, dtype=torch.long)))
    with pytest.raises(ValueError, match="manual optimization"):
        find_lr(module, loader, num_steps=5)
    module = Classifier()
    module.training_step = lambda batch, batch_idx: None  # type: ignore[method-assign]
    before = capture(module)
    with pytest.raises(ValueError, match="training_step returned None at batch 0"):
        find_lr(module, loader, num_steps=5)
    assert_restored(before, module)


def test_the_widget_on_a_lightning_module_writes_every_selected_lr_back() -> None:
    module = warmed()
    widget = LRWidget.from_lightning(
        module, datamodule=Data(), update_attr=True, autostart=False, num_steps=20
    )
    try:
        assert widget.run()
        widget.wait()
        assert widget.result is not None
        assert widget.result.metadata["framework"] == "LightningModule"
        picked = widget.select(widget.result.lrs[5])
        assert module.hparams.lr == picked
        assert widget.write_back() == "Classifier.lr"
    finally:
        widget.close()
    with pytest.raises(TypeError, match=r"LRWidget.from_lightning needs a lightning.pytorch"):
        LRWidget.from_lightning(torch.nn.Linear(2, 1))


def test_the_step_settings_come_from_the_trainer_given_or_attached() -> None:
    """Accumulation, clipping by norm and mixed precision live on the Trainer: the sweep takes
    them from the one given, or from the one the module is attached to."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's notes on the hardware it found
        trainer = pl.Trainer(
            accumulate_grad_batches=2, gradient_clip_val=0.5, precision="bf16-mixed",
            accelerator="cpu", logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
    module = Classifier()
    loader = Data()
    loader.setup("fit")
    result = find_lr(module, loader.train_dataloader(), trainer=trainer, num_steps=8)
    assert result.settings["accumulation_steps"] == 2
    assert result.settings["max_grad_norm"] == 0.5
    assert result.settings["amp_dtype"] == "bfloat16"
    assert result.metadata["effective_batch_size"] == 64
    module.trainer = trainer  # attached, as inside fit(): read without being passed
    assert adapt(module, loader.train_dataloader(), None, None, {}).options["max_grad_norm"] == 0.5
    with pytest.raises(TypeError, match="trainer are for a LightningModule"):
        find_lr(torch.nn.Linear(8, 3), loader.train_dataloader(), trainer=trainer)


def test_a_plain_module_passes_through_adapt_untouched() -> None:
    model = torch.nn.Linear(2, 1)
    data = [(torch.zeros(1, 2), torch.zeros(1, 1))]
    inputs = adapt(model, data, None, None, {"num_steps": 5})
    assert inputs.model is model
    assert inputs.train_data is data
    assert inputs.link is None
