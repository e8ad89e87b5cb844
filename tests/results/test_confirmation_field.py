"""A result's confirmation is a typed field of the result itself, saved beside its runs.

Before it had a field of its own it lived in ``metadata["confirmation"]`` as a dict (re-parsed on
every read), and a repeated result's landed inside run 0's metadata. Files written that way still
load, into the field.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from lr_widget.find import find_lr
from lr_widget.results.confirmation import Confirmation, compare_probes
from lr_widget.results.loading import load_result
from lr_widget.results.range_test import RangeTestResult
from lr_widget.results.repeated import RepeatedRangeTest
from tests.helpers import make_batches, make_classifier

CONFIRM = {"steps": 4, "factors": [0.5, 1.0]}


def _shuffled() -> DataLoader[tuple[torch.Tensor, ...]]:
    batches = make_batches(count=4)
    dataset = TensorDataset(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))
    return DataLoader(dataset, batch_size=32, shuffle=True)


def _found() -> Confirmation:
    return compare_probes([1e-3, 1e-2], [[2.0, 1.9, 1.8, 1.7], [2.0, 1.5, 1.0, 0.5]])


def test_a_repeated_results_confirmation_is_its_own_not_run_zeros(tmp_path: Path) -> None:
    path = tmp_path / "repeated.json"
    result = find_lr(
        make_classifier(), _shuffled(), repeats=2, end_lr=1.0, num_steps=30, confirm=CONFIRM,
        save_to=path,
    )  # fmt: skip
    assert isinstance(result.confirmation, Confirmation)
    assert all(run.confirmation is None for run in result.runs)
    assert all("confirmation" not in run.metadata for run in result.runs)
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["confirmation"] == result.confirmation.to_dict()
    loaded = load_result(path)
    assert loaded.confirmation == result.confirmation


def test_a_single_results_confirmation_round_trips(tmp_path: Path) -> None:
    result = find_lr(make_classifier(), make_batches(), end_lr=1.0, num_steps=30, confirm=CONFIRM)
    assert isinstance(result.confirmation, Confirmation)
    assert "confirmation" not in result.metadata
    loaded = RangeTestResult.load(result.save(tmp_path / "single.json"))
    assert loaded.confirmation == result.confirmation


def test_files_that_kept_it_in_the_metadata_still_load_into_the_field(tmp_path: Path) -> None:
    run = RangeTestResult([1e-3, 1e-2], [1.0, 0.9])
    old_single = {**run.to_dict(), "metadata": {"confirmation": _found().to_dict()}}
    old_single.pop("confirmation")
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old_single), encoding="utf-8")
    loaded = RangeTestResult.load(path)
    assert loaded.confirmation == _found()
    assert "confirmation" not in loaded.metadata
    old_repeated = RepeatedRangeTest([run, run], [0, 1], 2).to_dict()
    old_repeated.pop("confirmation")
    old_repeated["runs"][0] = old_single
    path.write_text(json.dumps(old_repeated), encoding="utf-8")
    repeated = load_result(path)
    assert isinstance(repeated, RepeatedRangeTest)
    assert repeated.confirmation == _found()
    assert repeated.runs[0].confirmation is None


def test_a_resmoothed_copy_shares_nothing_mutable() -> None:
    result = RangeTestResult([1e-3, 1e-2, 1e-1], [1.0, 0.9, 0.8], settings={"num_steps": 3})
    copy = result.with_beta(0.5)
    copy.losses.append(0.7)
    copy.settings["num_steps"] = 4
    copy.metadata["note"] = "changed"
    assert result.losses == [1.0, 0.9, 0.8]
    assert result.settings == {"num_steps": 3}
    assert result.metadata == {}
    repeated = RepeatedRangeTest([result, result.with_beta(0.9)], [0, 1], 2)
    again = repeated.with_train_steps(500)
    again.runs[0].losses.append(0.1)
    assert repeated.runs[0].losses == [1.0, 0.9, 0.8]
