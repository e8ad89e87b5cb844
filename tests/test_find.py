"""One API: ``find_lr(..., repeats=k)`` returns the repeated result that ``RepeatedSweep`` gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from typing_extensions import assert_type

from lr_widget.engine.repeated_sweep import RepeatedSweep, RepeatStepEvent
from lr_widget.find import find_lr
from lr_widget.results.loading import load_result
from lr_widget.results.range_test import RangeTestResult
from lr_widget.results.repeated import RepeatedRangeTest
from tests.helpers import assert_restored, capture, make_batches, make_classifier, warm_optimizer

SWEEP: dict[str, Any] = {"start_lr": 1e-4, "end_lr": 1.0, "num_steps": 12}


def _shuffled() -> DataLoader[tuple[torch.Tensor, ...]]:
    batches = make_batches(count=4)
    dataset = TensorDataset(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))
    return DataLoader(dataset, batch_size=32, shuffle=True)


def test_repeats_returns_the_runs_repeated_sweep_gives_and_restores() -> None:
    model = make_classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    warm_optimizer(model, optimizer)
    before = capture(model, optimizer)
    events: list[RepeatStepEvent] = []
    repeated = find_lr(
        model, _shuffled(), None, optimizer, repeats=3, seed=4, callback=events.append, **SWEEP
    )
    assert_type(repeated, RepeatedRangeTest)
    assert isinstance(repeated, RepeatedRangeTest)
    assert repeated.seeds == [4, 5, 6]
    assert {event.run for event in events} == {0, 1, 2}
    assert_restored(before, model, optimizer)
    explicit = RepeatedSweep(model, _shuffled(), None, optimizer, repeats=3, seed=4, **SWEEP).run()
    assert [run.losses for run in repeated.runs] == [run.losses for run in explicit.runs]
    assert_restored(before, model, optimizer)


def test_without_repeats_one_result_and_seed_alone_is_refused() -> None:
    single = find_lr(make_classifier(), make_batches(), num_steps=12)
    assert_type(single, RangeTestResult)
    assert isinstance(single, RangeTestResult)
    with pytest.raises(TypeError, match=r"seed= seeds repeated runs; pass repeats=k with it"):
        find_lr(make_classifier(), make_batches(), seed=3, **SWEEP)
    with pytest.raises(ValueError, match=r"repeats must be an integer >= 1, got 0"):
        find_lr(make_classifier(), make_batches(), repeats=0, **SWEEP)


def test_repeated_result_is_saved_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "repeated.json"
    repeated = find_lr(make_classifier(), _shuffled(), repeats=2, save_to=path, **SWEEP)
    loaded = load_result(path)
    assert isinstance(loaded, RepeatedRangeTest)
    assert [run.losses for run in loaded.runs] == [run.losses for run in repeated.runs]


def test_find_lr_confirm_probes_the_confirm_rule_restores_and_saves(tmp_path: Any) -> None:
    import torch

    from lr_widget.find import find_lr
    from lr_widget.results.confirmation import CONFIRM_RULE
    from lr_widget.results.range_test import RangeTestResult

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    inputs = [torch.randn(32, 4) for _ in range(8)]  # learnable: random labels give a flat curve
    data = [(x, (x[:, 0] > 0).long() + (x[:, 1] > 0).long()) for x in inputs]
    before = {name: value.clone() for name, value in model.state_dict().items()}
    result = find_lr(model, data, num_steps=40, start_lr=1e-5, end_lr=1.0, confirm={"steps": 6})
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    confirmation = result.confirmation
    assert confirmation is not None
    centre = result.suggest(CONFIRM_RULE).lr
    assert centre is not None
    assert centre != result.suggested_lr  # the probes centre on the confirm rule, not the default
    assert confirmation.suggested_lr == centre
    assert [probe.factor for probe in confirmation.probes] == pytest.approx([1 / 3, 1.0, 3.0])
    assert confirmation.steps == 18
    path = tmp_path / "confirmed.json"
    result.save(path)
    assert RangeTestResult.load(path).confirmation == confirmation
    assert find_lr(model, data, num_steps=20).confirmation is None


def test_find_lr_confirm_options_are_checked_before_the_sweep() -> None:
    import torch

    from lr_widget.find import find_lr

    model = torch.nn.Linear(4, 3)
    data = [(torch.randn(8, 4), torch.randint(0, 3, (8,)))]
    before = {name: value.clone() for name, value in model.state_dict().items()}
    calls: list[object] = []
    for bad, error, match in (
        ({"steps": 2}, ValueError, "steps must be an integer >= 4"),
        ({"speed": 1}, ValueError, r"unknown options \['speed'\]"),
        ("yes", TypeError, "confirm must be True, False or a dict"),
        ({"factors": [1.0]}, ValueError, "factors must hold at least two"),
    ):
        with pytest.raises(error, match=match):
            find_lr(model, data, num_steps=5, confirm=bad, callback=calls.append)
    assert calls == []  # no step ran
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
