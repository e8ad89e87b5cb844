"""Results: lossless strict JSON, CSV export, re-smoothing, readable repr, safe loading."""

from __future__ import annotations

import csv
import json
import math
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest

from lr_widget.curves.smoothing import debiased_ema
from lr_widget.find import find_lr
from lr_widget.results.jsonfile import DocumentError
from lr_widget.results.loading import load_result
from lr_widget.results.range_test import RangeTestResult, StopReason
from lr_widget.suggestions.registry import CURVE_READ
from tests.helpers import make_batches, make_classifier


def sample_result() -> RangeTestResult:
    return RangeTestResult(
        lrs=[1e-5, 1e-4, 1e-3, 1e-2],
        losses=[1.1, 0.9, 0.7, math.nan],
        val_losses=[1.2, 1.0, math.inf, -math.inf],
        beta=0.9,
        stop_reason=StopReason.NON_FINITE,
        stop_detail="loss was nan at step 3 (lr 1.00e-02)",
        settings={"start_lr": 1e-5, "diverge_factor": math.inf},
        timings={"total_s": 0.25},
        metadata={"model": "Net"},
    )


def test_json_round_trip_is_lossless_including_non_finite_values(tmp_path: Path) -> None:
    result = sample_result()
    loaded = RangeTestResult.load(result.save(tmp_path / "sweep.json"))
    assert loaded.to_dict() == result.to_dict()
    assert math.isnan(loaded.losses[3])
    assert loaded.val_losses == [1.2, 1.0, math.inf, -math.inf]
    assert loaded.settings["diverge_factor"] == math.inf
    assert loaded.stop_reason is StopReason.NON_FINITE


def test_json_is_strict_json(tmp_path: Path) -> None:
    text = sample_result().to_json()

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    data = json.loads(text, parse_constant=refuse)
    assert data["format"] == "lr_widget.range_test"
    assert data["losses"][3] == "NaN"


def test_real_sweep_round_trips_through_json() -> None:
    result = find_lr(make_classifier(), make_batches(), num_steps=20, val_data=make_batches(seed=3))
    loaded = RangeTestResult.from_json(result.to_json())
    assert loaded == result
    assert loaded.suggestion == result.suggestion


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ('{"format": "something else"}', "not an lr_widget range-test result"),
        (
            '{"format": "lr_widget.range_test", "version": 99, "lrs": [], "losses": []}',
            "unsupported range-test result version 99",
        ),
        (
            '{"format": "lr_widget.range_test", "version": 1, "lrs": [1], "losses": ["x"]}',
            "losses must hold numbers",
        ),
        (
            '{"format": "lr_widget.range_test", "version": 1, "lrs": [1, 2], "losses": [1]}',
            "same length",
        ),
        ("[\"__import__('os')\"]", "not an lr_widget range-test result"),
        ('{"format": "lr_widget.range_test", "version": 1, "lrs": [1]}', "has no losses field"),
    ],
)
def test_loading_rejects_documents_that_are_not_results(document: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RangeTestResult.from_json(document)


def test_csv_has_one_row_per_step_with_smoothed_and_validation_columns(tmp_path: Path) -> None:
    result = sample_result()
    with result.to_csv(tmp_path / "sweep.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4
    assert list(rows[0]) == ["step", "lr", "loss", "smoothed_loss", "val_loss", "smoothed_val_loss"]
    assert float(rows[2]["lr"]) == 1e-3
    assert float(rows[1]["smoothed_loss"]) == pytest.approx(debiased_ema([1.1, 0.9], 0.9)[1])
    assert rows[3]["loss"] == "nan"


def test_resmoothing_needs_no_new_sweep() -> None:
    result = sample_result()
    resmoothed = result.with_beta(0.0)
    assert resmoothed.smoothed_losses[:3].tolist() == [1.1, 0.9, 0.7]
    assert result.beta == 0.9
    # A copy shares nothing: editing it leaves the original as it was.
    assert list(resmoothed.losses) == list(result.losses)
    resmoothed.losses[0] = 99.0
    assert result.losses[0] != 99.0


def test_repr_reads_as_a_summary() -> None:
    text = repr(sample_result())
    assert text.startswith(
        "RangeTestResult(4 steps, lr 1.00e-05 -> 1.00e-02, non-finite loss at step 3"
    )
    assert "0.25 s" in text


def test_summary_lists_every_rule_and_marks_the_default() -> None:
    result = find_lr(make_classifier(), make_batches(), num_steps=60)
    lines = result.summary().splitlines()
    assert len(lines) == 4 + len(result.suggestions())
    assert lines[1] == f"   rules read {CURVE_READ}"
    assert lines[2].startswith("   the default (for_length) is for ")
    batch = result.metadata["batch_size"]
    assert lines[3] == f"   effective batch {batch} samples per optimizer step"
    assert sum(line.startswith(" * ") for line in lines) == 1


def test_the_effective_batch_is_recorded_and_stated() -> None:
    """The LR found holds for the batch one optimizer step saw: per micro-batch and rank,
    times the accumulated micro-batches (and the ranks, tested in tests/engine/)."""
    batches = make_batches()
    rows = len(batches[0][1])
    result = find_lr(make_classifier(), batches, num_steps=8, accumulation_steps=3)
    assert result.metadata["batch_size"] == rows
    assert result.metadata["effective_batch_size"] == 3 * rows
    assert (
        f"effective batch {3 * rows} samples per optimizer step ({rows} per batch x 3 "
        "accumulated)" in result.summary()
    )
    saved = type(result).from_json(result.to_json())
    assert saved.metadata["effective_batch_size"] == 3 * rows


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="val_losses must have one value per LR"):
        RangeTestResult(lrs=[1.0, 2.0], losses=[1.0, 2.0], val_losses=[1.0])


def _saved_text() -> str:
    return RangeTestResult(lrs=[1e-4, 1e-3, 1e-2], losses=[1.0, 0.5, 2.0]).to_json()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda: pickle.dumps(RangeTestResult(lrs=[1e-3], losses=[1.0])), "is a Python pickle"),
        (lambda: _saved_text()[:40].encode(), r"is not valid JSON \(truncated\?\)"),
        (lambda: _saved_text().replace("0.5", "NaN").encode(), "holds the literal NaN"),
        (lambda: _saved_text().replace("2.0", "-Infinity").encode(), "literal -Infinity"),
        (lambda: b"\xff\xfe{}", "is not UTF-8 text"),
        (lambda: b"[1, 2]", "not an lr_widget .*got a list"),
        (lambda: _saved_text().replace('"beta": 0.98', '"beta": "high"').encode(), "beta must"),
        (
            lambda: _saved_text().replace('"completed"', '"exploded"', 1).encode(),
            "stop_reason must be one of",
        ),
        (
            lambda: _saved_text().replace('"settings": {}', '"settings": []').encode(),
            "settings must be a JSON object",
        ),
    ],
)
def test_loading_a_damaged_or_foreign_file_names_the_problem(
    tmp_path: Path, content: Callable[[], bytes], message: str
) -> None:
    path = tmp_path / "sweep.json"
    path.write_bytes(content())
    for load in (RangeTestResult.load, load_result):
        with pytest.raises(DocumentError, match=message):
            load(path)
