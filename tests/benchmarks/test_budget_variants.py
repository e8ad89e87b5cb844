"""The other shapes of the length rule: their reference points, their choice by leave-one-task-out,
and the committed study agreeing with the library's own selection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import budget_cache as bc
from benchmarks import budget_rescore as br
from benchmarks import budget_variants as bv
from benchmarks import quality_cache as qc

ROOT = Path(__file__).resolve().parents[2]


def test_the_descent_and_rise_points_read_the_curve_where_they_say() -> None:
    lrs = np.logspace(-4, 0, 9)  # 1e-4, 3.2e-4, 1e-3, ... 1
    losses = np.array([2.0, 1.9, 1.5, 1.1, 1.02, 1.0, 1.4, 1.8, 2.5])
    # the fall is 2.0 -> 1.0; 90% of it is made where the loss reaches 1.1
    assert bv.descent_point(lrs, losses, 0.9) == pytest.approx(lrs[3])
    assert bv.descent_point(lrs, losses, 1.0) == pytest.approx(lrs[5])
    # past the lowest point, half the fall is climbed back at 1.8 > 1.5
    assert bv.rise_point(lrs, losses, 0.5) == pytest.approx(lrs[7])
    assert bv.rise_point(lrs[:7], losses[:7], 0.5) == pytest.approx(lrs[6])  # never: the last LR


def _truth(task: str, best: float) -> br.LengthTruth:
    lrs = list(best * np.logspace(-2, 2, 17))  # the best LR on the grid
    scores = [1.0 + abs(np.log10(lr / best)) for lr in lrs]
    return br.LengthTruth(
        task, 100, 1, lrs, {seed: scores for seed in qc.SEEDS}, {s: 5.0 for s in qc.SEEDS}, {},
        lrs[0],
    )  # fmt: skip


def test_the_study_chooses_each_shapes_constants_on_the_development_tasks() -> None:
    lowest = 1e-2
    facts = bv.TaskFacts(
        {seed: lowest for seed in qc.SEEDS}, {seed: None for seed in qc.SEEDS}, 10, True,
        lambda seed, centre, steps: centre,
    )  # fmt: skip
    # on every task the best LR is a quarter of the lowest point
    tasks = ["a", "b", "c", "held"]
    truths = {task: [_truth(task, lowest / 4)] for task in tasks}
    study = bv.study(truths, dict.fromkeys(tasks, facts), tasks[:3], tasks[3:])
    assert [entry["variant"] for entry in study] == [v.name for v in bv.VARIANTS]
    library = study[0]
    assert library["pick"].startswith("4, ")  # one length: the exponent is a tie
    assert library["cv_geo_mean"] == pytest.approx(1.0)
    assert library["held_out"]["1"]["geo_mean"] == pytest.approx(1.0)
    assert library["held_out"]["all"]["within_10pct"] == 1


def test_the_committed_study_agrees_with_the_librarys_selection() -> None:
    from lr_widget.suggestions import length

    document = json.loads((ROOT / "benchmarks/results/budget-rescored.json").read_text())
    part = document["scorings"][document["headline_scoring"]]
    library = part["variants"][0]
    assert library["variant"] == bv.VARIANTS[0].name
    assert library["pick"] == f"{length.DIVISOR_AT_REFERENCE:g}, {length.LENGTH_EXPONENT:g}"
    assert library["cv_geo_mean"] == pytest.approx(part["selection"]["cv_geo_mean"])
    for factor in (*map(str, bc.LENGTH_FACTORS), "all"):
        ours = part["per_length"][factor]["held_out"]["for_length, length given"]
        assert library["held_out"][factor]["geo_mean"] == pytest.approx(ours["geo_mean"])
    # the RESULTS section renders every variant with its verdict
    results = (ROOT / "benchmarks/RESULTS.md").read_text(encoding="utf-8")
    for entry in part["variants"]:
        assert f"| {entry['variant']} | {entry['grid_size']} |" in results
