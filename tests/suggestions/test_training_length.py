"""The default suggestion is for the training the user will run: ``train_steps``/``epochs``, the
length read by the default rule, stated by ``summary()``, checked before anything trains."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from lr_widget.find import find_lr
from lr_widget.results.range_test import RangeTestResult
from lr_widget.suggestions.length import (
    ASSUMED_TRAIN_STEPS,
    DIVISOR_AT_REFERENCE,
    MAX_DIVISOR,
    REFERENCE_STEPS,
    divisor_for,
)
from lr_widget.suggestions.registry import DEFAULT_RULE, SCHEDULE_RULES, suggest
from tests.helpers import assert_restored, capture, make_batches, make_classifier

LRS = np.logspace(-6, 0, 61)
LOSSES = 1.0 + (np.log10(LRS) + 2.0) ** 2  # lowest at 1e-2


def _result(**settings: Any) -> RangeTestResult:
    return RangeTestResult(lrs=LRS.tolist(), losses=LOSSES.tolist(), beta=0.0, settings=settings)


def test_the_divisor_is_the_reference_one_at_the_sweep_length_and_grows_with_the_run() -> None:
    assert divisor_for(REFERENCE_STEPS) == pytest.approx(DIVISOR_AT_REFERENCE)
    lengths = [100, 1_000, 10_000, 100_000]
    divisors = [divisor_for(steps) for steps in lengths]
    assert divisors == sorted(divisors)
    assert divisors[-1] > divisors[0]
    assert divisor_for(10**60) == MAX_DIVISOR  # clamped, however long
    assert divisor_for(None) == divisor_for(ASSUMED_TRAIN_STEPS)


def test_a_longer_run_gets_a_smaller_lr_from_the_same_curve_without_a_new_sweep() -> None:
    result = _result()
    lowest = 1e-2
    for steps in (100, 3_000, 50_000):
        suggestion = result.suggestion_for("constant", train_steps=steps)
        assert suggestion.rule == DEFAULT_RULE
        assert suggestion.lr == pytest.approx(lowest / divisor_for(steps), rel=1e-9)
        assert f"{steps:,} training steps" in suggestion.reason
    short = result.suggestion_for("constant", train_steps=100).lr
    long = result.suggestion_for("constant", train_steps=50_000).lr
    assert short is not None
    assert long is not None
    assert long < short
    # one-cycle reads its own rule, whatever the length
    assert result.suggestion_for("one-cycle").rule == SCHEDULE_RULES["one-cycle"]


def test_the_length_given_to_the_sweep_is_the_defaults_and_survives_saving(tmp_path: Any) -> None:
    result = _result(train_steps=2_000)
    assert result.train_steps == 2_000
    assert result.suggestion.lr == pytest.approx(1e-2 / divisor_for(2_000), rel=1e-9)
    path = result.save(tmp_path / "sweep.json")
    loaded = RangeTestResult.load(path)
    assert loaded.train_steps == 2_000
    assert loaded.suggestion == result.suggestion
    # another length asked for explicitly wins over the saved one
    assert loaded.suggestion_for(train_steps=100).lr == pytest.approx(1e-2 / divisor_for(100))
    assert loaded.with_train_steps(None).suggestion == _result().suggestion


def test_summary_states_the_length_assumed_or_given() -> None:
    assumed = _result().summary()
    assert f"is for {ASSUMED_TRAIN_STEPS:,} training steps (assumed" in assumed
    given = _result(train_steps=4_000).summary()
    assert "is for 4,000 training steps\n" in given + "\n"
    assert "assumed" not in given.splitlines()[2]


def test_find_lr_takes_train_steps_or_epochs_into_its_result() -> None:
    batches = make_batches(count=8)
    by_steps = find_lr(make_classifier(), batches, num_steps=30, train_steps=500)
    assert by_steps.train_steps == 500
    by_epochs = find_lr(make_classifier(), batches, num_steps=30, epochs=20)
    assert by_epochs.train_steps == 20 * len(batches)
    accumulated = find_lr(make_classifier(), batches, num_steps=10, epochs=3, accumulation_steps=2)
    assert accumulated.train_steps == 3 * len(batches) // 2
    # the default suggestion is the rule read at that length
    assert by_steps.suggestion == suggest(by_steps.lrs, by_steps.lag_free_curve, train_steps=500)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"train_steps": 0}, ValueError, "train_steps must be an integer >= 1, got 0"),
        ({"train_steps": 2.5}, TypeError, "train_steps must be an integer >= 1"),
        ({"train_steps": True}, TypeError, "train_steps must be an integer >= 1"),
        ({"epochs": 0}, ValueError, "epochs must be a finite number > 0, got 0"),
        ({"epochs": float("inf")}, ValueError, "epochs must be a finite number > 0"),
        ({"epochs": "3"}, TypeError, "epochs must be a finite number > 0"),
        ({"epochs": 2, "train_steps": 100}, TypeError, "train_steps or epochs, not both"),
    ],
)
def test_bad_lengths_are_refused_before_anything_trains(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    before = capture(model, optimizer)
    with pytest.raises(error, match=message):
        find_lr(model, make_batches(), optimizer=optimizer, num_steps=10, **options)
    assert_restored(before, model, optimizer)


def test_epochs_of_an_unsized_loader_say_to_give_train_steps() -> None:
    def endless() -> Any:
        while True:
            yield from make_batches()

    with pytest.raises(TypeError, match=r"epochs needs a train_data with a length.*train_steps="):
        find_lr(make_classifier(), endless(), num_steps=10, epochs=3)


def test_the_saved_length_is_strict_json() -> None:
    text = _result(train_steps=123).to_json()
    assert json.loads(text)["settings"]["train_steps"] == 123
