"""A fastai Learner swept with its model, dls.train, loss_func and optimizer, with the real
fastai: its optimizer state, hypers, LR groups and loader RNG restored, the LR written to
learn.lr, the curve equal to find_lr's by hand; and our rules as fastai suggest_funcs."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastai.callback.core import Callback
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.schedule import valley
from fastai.callback.training import GradientAccumulation, GradientClip
from fastai.data.core import DataLoaders
from fastai.data.load import DataLoader as FastaiLoader
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from torch import nn
from torch.utils.data import TensorDataset

import lr_widget.fastai
from lr_widget import LRWidget, find_lr
from lr_widget.engine.sweep import LRFinder
from lr_widget.frameworks import adapt
from lr_widget.frameworks.learner import FastaiOptimizer
from tests.helpers import assert_restored, assert_trees_equal, capture


def make_learner(**options: Any) -> Learner:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(512, 8, generator=generator)
    dataset = TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long())
    loaders = DataLoaders(FastaiLoader(dataset, bs=32, shuffle=True), FastaiLoader(dataset, bs=64))
    model = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))
    return Learner(loaders, model, loss_func=CrossEntropyLossFlat(), **options)


def two_groups(model: nn.Module) -> list[list[nn.Parameter]]:
    """A fastai splitter: the first layers, then the head (for discriminative LRs)."""
    return [list(model[:3].parameters()), list(model[3].parameters())]


def quiet_fit(learn: Learner, epochs: int = 1) -> None:
    with learn.no_bar(), learn.no_logging():
        learn.fit(epochs, 1e-3)


def test_a_sweep_through_a_fresh_learner_matches_find_lr_by_hand_and_leaves_it_as_it_was() -> None:
    learn = make_learner()
    model = learn.model
    before = capture(model)
    rng_before = learn.dls.train.rng.getstate()
    result = find_lr(learn, num_steps=40, update_attr=True)
    assert result.metadata["framework"] == "fastai Learner"
    assert result.metadata["optimizer"] == "fastai Adam"
    assert_restored(before, model)
    assert learn.opt is None  # fit() builds its own, as if we had never asked
    assert learn.dls.train.rng.getstate() == rng_before
    assert learn.lr == result.suggestion.lr

    # By hand: fastai's Adam is AdamW with betas (0.9, 0.99), eps 1e-5 and weight decay 0.01,
    # none on norm layers and biases (wd_bn_bias=False).
    no_decay = [model[0].bias, model[1].weight, model[1].bias, model[3].bias]
    ids = {id(p) for p in no_decay}
    decay = [p for p in model.parameters() if id(p) not in ids]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.99), eps=1e-5,
    )  # fmt: skip
    by_hand = find_lr(
        model, learn.dls.train, lambda out, y: learn.loss_func(out, y), optimizer, num_steps=40
    )
    assert result.lrs == by_hand.lrs
    np.testing.assert_allclose(result.losses, by_hand.losses, rtol=1e-5)


def test_a_learner_mid_training_keeps_its_optimizer_state_hypers_and_lr_groups() -> None:
    learn = make_learner(splitter=two_groups)
    quiet_fit(learn)
    learn.opt.set_hyper("lr", [1e-4, 1e-3])  # discriminative LRs: the head 10x the body
    model = learn.model
    before = capture(model)
    state_before = copy.deepcopy({id(p): s for p, s in learn.opt.state.items()})
    hypers_before = copy.deepcopy(list(learn.opt.hypers))
    opt = learn.opt

    inputs = adapt(learn, None, None, None, {"num_steps": 20})
    assert isinstance(inputs.optimizer, FastaiOptimizer)
    ratios: list[float] = []

    def group_ratio(_event: Any) -> None:
        groups = inputs.optimizer.param_groups  # type: ignore[union-attr]
        ratios.append(groups[1]["lr"] / groups[0]["lr"])

    finder = LRFinder(inputs.model, inputs.train_data, optimizer=inputs.optimizer, **inputs.options)
    finder.run(group_ratio)
    assert ratios
    assert all(math.isclose(ratio, 10.0) for ratio in ratios)
    assert learn.opt is opt
    assert_restored(before, model)
    assert_trees_equal(state_before, {id(p): s for p, s in learn.opt.state.items()}, "state")
    assert list(learn.opt.hypers) == hypers_before

    result = find_lr(learn, num_steps=20, update_attr=True)
    lr = result.suggestion.lr
    assert learn.lr == lr
    assert [h["lr"] for h in learn.opt.hypers] == pytest.approx([lr / 10, lr])


def test_the_widget_on_a_learner_writes_learn_lr() -> None:
    learn = make_learner()
    widget = LRWidget.from_learner(learn, update_attr=True, autostart=False, num_steps=15)
    try:
        assert widget.run()
        result = widget.wait()
        picked = widget.select(result.lrs[6])
        assert learn.lr == picked
        status = widget.controls.status.value
        assert "optimizer: fastai Adam, through the fastai Learner" in status
    finally:
        widget.close()
    with pytest.raises(TypeError, match=r"from_learner needs a fastai.Learner"):
        LRWidget.from_learner(torch.nn.Linear(2, 1))


def test_the_step_settings_come_from_the_learners_callbacks() -> None:
    """fastai changes the step through callbacks: clipping, accumulation and mixed precision
    are read from them, as the engine's options."""
    learn = make_learner(cbs=[GradientClip(0.3), GradientAccumulation(n_acc=64)])
    result = find_lr(learn, num_steps=8)
    assert result.settings["max_grad_norm"] == 0.3
    assert result.settings["accumulation_steps"] == 2  # 64 samples in batches of 32
    assert result.metadata["effective_batch_size"] == 64
    assert (
        adapt(make_learner(cbs=[MixedPrecision(amp_mode="bf16")]), None, None, None, {}).options[
            "amp_dtype"
        ]
        == "bfloat16"
    )
    with pytest.raises(ValueError, match="clips the 2-norm only"):
        find_lr(make_learner(cbs=[GradientClip(0.3, norm_type=1.0)]), num_steps=8)


class RawLosses(Callback):
    """Keeps every training batch's own loss, beside fastai's smoothed record."""

    def before_fit(self) -> None:
        self.losses: list[float] = []

    def after_batch(self) -> None:
        if self.training:
            self.losses.append(float(self.learn.loss.detach()))


def test_our_rules_run_inside_fastais_own_lr_find(tmp_path: Path) -> None:
    raw = RawLosses()
    learn = make_learner(cbs=[raw], path=tmp_path)  # lr_find saves the weights under path
    with learn.no_bar(), warnings.catch_warnings():
        # fastai reloads its saved weights through numpy.core, deprecated in numpy 2: its noise.
        warnings.filterwarnings("ignore", "numpy.core is deprecated", DeprecationWarning)
        found = learn.lr_find(
            suggest_funcs=(valley, *lr_widget.fastai.suggest_funcs), show_plot=False
        )
    assert found._fields == (
        "valley", "lr_widget_for_length", "lr_widget_minimum", "lr_widget_steep"
    )  # fmt: skip
    assert all(1e-7 < lr < 10 for lr in found)

    # What the rules read: the raw losses recovered from fastai's smoothed record.
    start = 100 // 10
    smoothed = [float(loss) for loss in learn.recorder.losses[start:-5]]
    recovered = lr_widget.fastai.raw_losses(smoothed, first_count=start + 1)
    truth = raw.losses[start + 1 : start + 1 + len(recovered)]
    np.testing.assert_allclose(recovered, truth, rtol=1e-4)


def test_a_flat_record_gives_nan_which_fastais_plot_leaves_out() -> None:
    lrs = np.logspace(-7, 1, 60)
    flat = np.full(60, 1.0)
    lr, point = lr_widget.fastai.suggest("for_length")(lrs, flat, 100)
    assert math.isnan(lr)
    assert all(math.isnan(v) for v in point)
    with pytest.raises(ValueError, match="rule must be one of"):
        lr_widget.fastai.suggest("fastest")
