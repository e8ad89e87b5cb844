"""The divergence test compares the smoothed loss with its minimum from the end of a warm-up:
the first averages are of a few batches, and on a trained model (losses 0.05 then 0.5) one lucky
batch made "4 x the best" fire at step 2."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from lr_widget import find_lr
from lr_widget.engine.recording import DIVERGENCE_WARMUP_STEPS, divergence_warmup
from lr_widget.results.range_test import StopReason
from tests.helpers import make_batches, make_classifier


def _scripted(losses: Callable[[int], float]) -> Callable[[torch.nn.Module, object], torch.Tensor]:
    """A step_fn whose loss at step i is ``losses(i)`` (the model runs, with zero gradient)."""
    calls = [0]

    def step(model: torch.nn.Module, batch: object) -> torch.Tensor:
        inputs, _ = batch  # type: ignore[misc]
        value = losses(calls[0])
        calls[0] += 1
        return model(inputs).sum() * 0.0 + value

    return step


def test_one_lucky_early_batch_does_not_end_the_sweep() -> None:
    noisy = [0.05, 0.6, 0.4, 0.7, 0.5, 0.6, 0.4, 0.5, 0.7, 0.6]  # a trained model's batches
    result = find_lr(
        make_classifier(), make_batches(), step_fn=_scripted(lambda i: noisy[i % len(noisy)]),
        num_steps=60,
    )  # fmt: skip
    assert result.stop_reason is StopReason.COMPLETED
    assert result.num_steps == 60


def test_a_real_blow_up_after_the_warm_up_still_ends_it() -> None:
    result = find_lr(
        make_classifier(), make_batches(), num_steps=60,
        step_fn=_scripted(lambda i: 1.0 if i < 30 else 1.0 * 1.5 ** (i - 30)),
    )  # fmt: skip
    assert result.stop_reason is StopReason.DIVERGED
    assert 30 < result.num_steps < 60


def test_the_warm_up_is_a_tenth_of_a_short_sweep_and_the_readme_says_so() -> None:
    assert divergence_warmup(100) == DIVERGENCE_WARMUP_STEPS
    assert divergence_warmup(40) == 4
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    text = " ".join(readme.split())
    assert f"counted from step {DIVERGENCE_WARMUP_STEPS}, or a tenth of a shorter sweep" in text
