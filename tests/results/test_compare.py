"""Comparisons: labelled single and repeated results, in order, tabled, and saved losslessly."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lr_widget.results.compare import Comparison, ComparisonRow
from lr_widget.results.loading import load_result, result_from_dict
from lr_widget.results.range_test import RangeTestResult, StopReason
from lr_widget.results.repeated import RepeatedRangeTest
from lr_widget.suggestions.registry import DEFAULT_RULE


def falling_run(shift: float = 0.0, steps: int = 30, scale: float = 1.0) -> RangeTestResult:
    """A curve that falls then blows up, on an LR grid from 1e-5 to ``scale``."""
    lrs = [1e-5 * (scale / 1e-5) ** (i / (steps - 1)) for i in range(steps)]
    losses = [
        2.0 - math.tanh(6 * i / steps - 2) + shift + (i / steps) ** 8 * 5 for i in range(steps)
    ]
    return RangeTestResult(
        lrs=lrs, losses=losses, beta=0.0, stop_reason=StopReason.DIVERGED, metadata={"m": shift}
    )


def repeated() -> RepeatedRangeTest:
    runs = [falling_run(shift) for shift in (0.0, 0.05, -0.05)]
    runs[1] = RangeTestResult(lrs=runs[1].lrs[:25], losses=runs[1].losses[:25], beta=0.0)
    return RepeatedRangeTest(runs, seeds=[0, 1, 2], repeats=3)


def test_labels_default_to_run_n_and_must_be_unique() -> None:
    comparison = Comparison([falling_run(), falling_run(0.1)])
    assert comparison.labels == ["run 1", "run 2"]
    assert comparison.add(repeated()) == "run 3"
    with pytest.raises(ValueError, match="already used"):
        comparison.add(falling_run(), "run 1")
    with pytest.raises(ValueError, match="non-empty"):
        comparison.add(falling_run(), " ")
    with pytest.raises(TypeError, match="RangeTestResult or RepeatedRangeTest"):
        comparison.add([1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one entry per result"):
        Comparison([falling_run()], labels=["a", "b"])


def test_add_remove_and_clear_keep_the_order() -> None:
    first, second, third = falling_run(), falling_run(0.1), repeated()
    comparison = Comparison([first, second, third], labels=["a", "b", "c"])
    assert comparison.remove("b") is second
    assert comparison.labels == ["a", "c"]
    assert comparison.remove(-1) is third
    assert comparison["a"] is first
    assert comparison[0] is first
    assert comparison.add(second) == "run 2"  # the next free "run N"
    assert [label for label, _ in comparison] == ["a", "run 2"]
    with pytest.raises(KeyError, match="no entry labelled 'zz'"):
        comparison.remove("zz")
    with pytest.raises(IndexError):
        comparison.remove(5)
    comparison.clear()
    assert len(comparison) == 0
    assert comparison.summary() == "Comparison(empty)"


def test_comparison_survives_strict_json_with_labels_and_both_result_kinds(tmp_path: Path) -> None:
    comparison = Comparison([falling_run(), repeated()], labels=["sgd lr sweep", "adam, 3 seeds"])

    def refuse(constant: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {constant}")

    json.loads(comparison.to_json(), parse_constant=refuse)
    loaded = Comparison.load(comparison.save(tmp_path / "comparison.json"))
    assert loaded.labels == ["sgd lr sweep", "adam, 3 seeds"]
    assert loaded.to_dict() == comparison.to_dict()
    assert isinstance(loaded["sgd lr sweep"], RangeTestResult)
    assert loaded["sgd lr sweep"] == comparison["sgd lr sweep"]
    assert isinstance(loaded["adam, 3 seeds"], RepeatedRangeTest)
    assert loaded["adam, 3 seeds"].seeds == [0, 1, 2]


def test_from_paths_loads_either_result_kind_labelled_by_file_name(tmp_path: Path) -> None:
    single = falling_run().save(tmp_path / "single.json")
    several = repeated().save(tmp_path / "several.json")
    comparison = Comparison.from_paths([single, several])
    assert comparison.labels == ["single", "several"]
    assert isinstance(comparison["single"], RangeTestResult)
    assert isinstance(comparison["several"], RepeatedRangeTest)
    assert Comparison.from_paths([single], labels=["mine"]).labels == ["mine"]
    assert isinstance(load_result(several), RepeatedRangeTest)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"format": "something.else"}, "not an lr_widget result"),
        ({"format": "lr_widget.comparison", "version": 1, "entries": {}}, "entries"),
        ({"format": "lr_widget.comparison", "version": 2, "entries": []}, "version"),
        (
            {"format": "lr_widget.comparison", "version": 1, "entries": [{"label": 3}]},
            "not an lr_widget result",
        ),
    ],
)
def test_malformed_documents_are_rejected(document: dict[str, Any], message: str) -> None:
    loader = result_from_dict if document["format"] == "something.else" else Comparison.from_dict
    with pytest.raises(ValueError, match=message):
        loader(document)


def test_table_gives_each_labels_default_suggestion() -> None:
    single, several = falling_run(), repeated()
    comparison = Comparison([single, several], labels=["one", "three"])
    rows = comparison.table()
    assert rows == [
        ComparisonRow("one", 1, single.suggestion, None, None, "diverged"),
        ComparisonRow(
            "three",
            3,
            several.suggestion,
            several.spread().low_lr,
            several.spread().high_lr,
            "completed/diverged",
        ),
    ]
    assert several.suggestion.lr is not None
    assert str(rows[1]).startswith(f"three: {DEFAULT_RULE} {several.suggestion.lr:.2e} (")
    assert comparison.suggestions("steep")["one"] == single.suggest("steep")
    summary = comparison.summary()
    assert summary.splitlines() == [repr(comparison), f"  {rows[0]}", f"  {rows[1]}"]


def test_bands_draw_both_kinds_through_one_shape() -> None:
    comparison = Comparison([falling_run(scale=1.0), repeated()], labels=["one", "three"])
    bands = comparison.bands()
    fitted = np.isfinite(falling_run(scale=1.0).lag_free_curve)  # the fit ends at the blow-up
    assert bands["one"].width[fitted].tolist() == [0.0] * int(fitted.sum())
    assert bands["one"].count.tolist() == fitted.astype(int).tolist()
    np.testing.assert_array_equal(bands["one"].median, falling_run(scale=1.0).lag_free_curve)
    fits = [run.lag_free_curve for run in repeated().runs]  # each ends at its run's blow-up
    reached = [sum(step < fit.size and bool(np.isfinite(fit[step])) for fit in fits)
               for step in range(30)]  # fmt: skip
    assert bands["three"].count.tolist() == reached
    assert reached[:25] == [3] * 25
    np.testing.assert_array_equal(bands["three"].median, repeated().median)
