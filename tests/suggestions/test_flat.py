"""A curve with no descent beyond batch noise is named flat, and only what it still tells is
suggested: where the loss starts to rise (issue 28: "a flat curve says so")."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lr_widget import RangeTestResult, find_lr
from lr_widget.demo import make_demo
from lr_widget.results.confirmation import CONFIRM_RULE, confirm_centre
from lr_widget.suggestions import DEFAULT_RULE, RULES, suggest, suggest_all
from lr_widget.suggestions.curve import NOISE_SIGMAS, prepare
from lr_widget.suggestions.length import divisor_for

LRS = np.logspace(-6, 1, 100)


def _noisy(curve: np.ndarray, noise: float, seed: int = 0) -> np.ndarray:
    return curve + np.random.default_rng(seed).normal(0.0, noise, curve.size)


def _flat_then_rising(rise_at: float = 1e-2) -> np.ndarray:
    """Loss 1 until ``rise_at``, then up by 2 per decade (a trained model's range test)."""
    return 1.0 + 2.0 * np.maximum(np.log10(LRS / rise_at), 0.0)


def _descending() -> np.ndarray:
    """A fresh model's curve: falls by 0.8 between 1e-4 and 1e-2, then blows up."""
    fall = 0.4 * (1 - np.tanh(2 * (np.log10(LRS) + 3)))
    return 0.2 + fall + 3.0 * np.maximum(np.log10(LRS / 0.1), 0.0)


def test_a_flat_curve_gives_the_default_the_rise_and_every_other_rule_no_answer() -> None:
    result = RangeTestResult(lrs=LRS.tolist(), losses=_noisy(_flat_then_rising(), 0.2).tolist())
    flat = result.flat
    assert flat is not None
    assert flat.drop <= NOISE_SIGMAS * flat.noise
    assert flat.rise_lr is not None
    assert 3e-3 < flat.rise_lr < 1e-1
    default = result.suggest(DEFAULT_RULE, train_steps=1000)
    assert default.lr == pytest.approx(flat.rise_lr / divisor_for(1000))
    assert default.reason.startswith("flat: no descent beyond batch noise")
    assert f"the loss starts to rise at {flat.rise_lr:.1e}" in default.reason
    assert f"LRs below {flat.rise_lr:.1e} are safe" in default.reason
    assert "confirm=True" in default.reason
    assert "repeats=3" in default.reason
    others = {rule: result.suggest(rule) for rule in RULES if rule != DEFAULT_RULE}
    assert all(s.lr is None and s.reason.startswith("flat curve") for s in others.values())
    assert "flat: no descent" in result.summary()
    # A confirmation then centres on the default's answer, the minimum having none.
    assert confirm_centre(result.suggestions()) == result.suggestion
    assert result.suggest(CONFIRM_RULE).lr is None


def test_a_descending_curve_with_the_same_noise_is_not_flat() -> None:
    result = RangeTestResult(lrs=LRS.tolist(), losses=_noisy(_descending(), 0.2).tolist())
    assert result.flat is None
    assert all(s.ok for s in result.suggestions().values())
    assert "flat" not in result.suggestion.reason


def test_a_flat_curve_that_never_rises_gives_no_answer_and_says_to_widen_the_range() -> None:
    result = RangeTestResult(lrs=LRS.tolist(), losses=_noisy(np.ones(LRS.size), 0.2).tolist())
    assert result.flat is not None
    assert result.flat.rise_lr is None
    assert result.suggestion.lr is None
    assert "never rises in the range swept" in result.suggestion.reason
    assert "raise end_lr" in result.suggestion.reason


def test_the_rules_read_the_noise_only_when_given_it() -> None:
    curve = _noisy(_flat_then_rising(), 0.01) + 0.05 * np.sin(np.arange(LRS.size))
    without = suggest_all(LRS, curve)
    assert all(s.ok for s in without.values())  # the pure functions: no noise, no flat reading
    with_noise = suggest(LRS, curve, "minimum", noise=0.05)
    assert with_noise.lr is None
    assert with_noise.reason.startswith("flat curve")
    prepared = prepare(LRS, curve, noise=0.05)
    assert not isinstance(prepared, str)
    assert prepared.flat is not None


def test_a_model_trained_to_convergence_on_the_demo_gets_a_flat_reason() -> None:
    """Issue 28's must-show: the forum's "I ran the finder after a few epochs"; and the sweep
    is not cut after two steps by one lucky early batch (the divergence warm-up)."""
    torch.manual_seed(0)
    demo = make_demo(seed=0)
    optimizer = torch.optim.AdamW(demo.model.parameters(), lr=3e-3)
    for _ in range(20):
        for inputs, targets in demo.train_loader:
            optimizer.zero_grad()
            demo.loss_fn(demo.model(inputs), targets).backward()
            optimizer.step()
    result = find_lr(demo.model, demo.train_loader, demo.loss_fn)
    assert result.num_steps > 50
    assert "flat" in result.suggestion.reason
    assert result.suggestion.lr is not None  # what is still known: the rise, divided
    fresh = find_lr(make_demo(seed=0).model, demo.train_loader, demo.loss_fn)
    assert fresh.flat is None
    assert "flat" not in fresh.suggestion.reason
