"""Score every rule, anchor and option offline from the quality cache, in seconds.

``python -m benchmarks.rescore`` reads ``results/quality-cache.json`` (written once by
:mod:`benchmarks.quality_cache`), writes ``results/quality-rescored.json`` and regenerates
``RESULTS.md`` (its suggestion-quality section) from it. No training happens here: a method's
pick ``lr`` with seed ``s`` is scored by interpolating, linearly in ``log10(lr)``, seed ``s``'s
validation scores on the ground-truth grid (four LRs per decade; outside the grid the end value
holds). A rule's regret on a task is its mean score over seeds divided by the best mean on the
grid, minus one.

lr_widget's rules run through the library itself (``RangeTestResult.suggest`` reads the lag-free
curve; ``RepeatedRangeTest`` for the repeats), on the raw sweeps in the cache. The confirmation
step is scored from the cached start of the ground-truth runs: a probe from the starting state
at ``x`` with seed ``s`` is exactly the first steps of the ground-truth run at ``x`` with seed
``s``; each candidate ``lr * factor`` reads the grid LR nearest to it (at most 1/8 decade off).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.common import RESULTS_DIR
from benchmarks.quality_cache import CACHE_PATH, lr_key
from benchmarks.rescore_report import markdown
from benchmarks.split import DEV_TASKS, HELD_OUT_TASKS
from benchmarks.stats import geometric_mean

__all__ = ["interpolated_score", "leave_one_out", "main", "score_methods"]

WITHIN = 0.10
CONFIRM_STEPS = 30
ANCHOR_METHODS = {
    "fastai/valley": ("fastai", "valley"),
    "fastai/minimum": ("fastai", "minimum"),
    "fastai/steep": ("fastai", "steep"),
    "fastai/slide": ("fastai", "slide"),
    "lightning/steep": ("lightning", "steep"),
    "torch-lr-finder/steep": ("torch-lr-finder", "steep"),
}
Picks = dict[int, float | None]


def interpolated_score(grid: Sequence[float], scores: Sequence[float], lr: float) -> float:
    """Linear interpolation of ``scores`` in ``log10`` of the ``grid`` LRs, clamped at the ends.

    >>> interpolated_score([1e-3, 1e-2], [1.0, 3.0], 10 ** -2.5)
    2.0
    """
    return float(np.interp(math.log10(lr), np.log10(grid), scores))


class TaskTruth:
    """One task's ground truth for one schedule: per-seed grid scores and the best mean."""

    def __init__(self, cache: dict[str, Any], task: str, schedule: str) -> None:
        jobs, self.grid, self.seeds = cache["jobs"], cache["grid"], cache["seeds"]
        self.runs = {
            seed: [jobs[f"train|{schedule}|{task}|{lr_key(lr)}|{seed}"] for lr in self.grid]
            for seed in self.seeds
        }
        self.scores = {seed: [run["score"] for run in runs] for seed, runs in self.runs.items()}
        means = np.mean([self.scores[seed] for seed in self.seeds], axis=0)
        self.best_index = int(np.argmin(means))
        self.best_lr, self.best = float(self.grid[self.best_index]), float(means[self.best_index])
        self.initial = {seed: self.runs[seed][0]["initial"] for seed in self.seeds}

    def regret(self, picks: Picks) -> float:
        values = [
            self.initial[seed]
            if lr is None
            else interpolated_score(self.grid, self.scores[seed], lr)
            for seed, lr in picks.items()
        ]
        return float(np.mean(values)) / self.best - 1.0

    def probe_losses(self, seed: int, lr: float) -> list[float]:
        """The first ``CONFIRM_STEPS`` training losses at the grid LR nearest ``lr``."""
        nearest = int(np.argmin(np.abs(np.log10(self.grid) - math.log10(lr))))
        losses = self.runs[seed][nearest]["train_losses"][:CONFIRM_STEPS]
        return [float(loss) for loss in losses]


# -- lr_widget's picks --------------------------------------------------------------------------
def sweep_runs(cache: dict[str, Any], task: str, seed: int) -> list[Any]:
    from lr_widget.results.range_test import RangeTestResult

    sweeps = cache["jobs"][f"sweep|lr_widget|{task}|{seed}"]["runs"]
    return [RangeTestResult(lrs=run["lrs"], losses=run["losses"]) for run in sweeps]


def lr_widget_picks(cache: dict[str, Any], task: str) -> dict[str, Picks]:
    """Every lr_widget method's pick per seed: each registered rule on the lag-free curve (the
    default path), on the EMA curve (the old path), a few more minimum/k and widths, repeats."""
    from lr_widget.curves.smoothing import lag_free
    from lr_widget.results.repeated import RepeatedRangeTest
    from lr_widget.suggestions.registry import REGISTRY, Rule, suggest
    from lr_widget.suggestions.rules import minimum_over

    extra = {
        f"minimum_over_{k:g}": Rule(f"minimum_over_{k:g}", minimum_over(k), "") for k in (2, 5, 20)
    }
    picks: dict[str, Picks] = {}
    for seed in cache["seeds"]:
        runs = sweep_runs(cache, task, seed)
        first = runs[0]
        curve = first.lag_free_curve
        for name in REGISTRY:
            picks.setdefault(name, {})[seed] = first.suggest(name).lr
            picks.setdefault(f"EMA {name}", {})[seed] = suggest(first.lrs, first.curve, name).lr
        for name, rule in extra.items():
            picks.setdefault(name, {})[seed] = rule(first.lrs, curve).lr
        for width in (0.75, 3.0):
            other = lag_free(first.lrs, first.raw_curve, width)
            for name in ("minimum", "minimum_third", "valley", "steep", "consensus"):
                picks.setdefault(f"{name} (width {width:g})", {})[seed] = suggest(
                    first.lrs, other, name
                ).lr
        repeated = RepeatedRangeTest(runs)
        for name in REGISTRY:
            picks.setdefault(f"3 repeats {name}", {})[seed] = repeated.suggest(name).lr
            picks.setdefault(f"3 repeats median-curve {name}", {})[seed] = (
                repeated.median_curve_suggestion(name).lr
            )
    return picks


def confirm_picks(truth: TaskTruth, rule_picks: Picks, decisive_only: bool) -> Picks:
    """The confirmation step's pick around each of ``rule_picks``."""
    from lr_widget.results.confirmation import DEFAULT_FACTORS, compare_probes

    out: Picks = {}
    for seed, lr in rule_picks.items():
        if lr is None:
            out[seed] = None
            continue
        candidates = [lr * factor for factor in DEFAULT_FACTORS]
        probes = [truth.probe_losses(seed, candidate) for candidate in candidates]
        found = compare_probes(candidates, probes, lr)
        out[seed] = found.winner if (found.decisive or not decisive_only) else lr
    return out


def anchor_picks(cache: dict[str, Any], task: str) -> dict[str, Picks]:
    picks: dict[str, Picks] = {}
    for method, (tool, rule) in ANCHOR_METHODS.items():
        for seed in cache["seeds"]:
            reply = cache["jobs"][f"sweep|{tool}|{task}|{seed}"]
            picks.setdefault(method, {})[seed] = (reply.get("suggestions") or {}).get(rule)
    return picks


# -- scoring ------------------------------------------------------------------------------------
def score_methods(cache: dict[str, Any], schedule: str) -> dict[str, Any]:
    """Per task: best LR, and every method's regret and picks, for ``schedule``."""
    from lr_widget.results.confirmation import CONFIRM_RULE
    from lr_widget.suggestions.registry import DEFAULT_RULE

    tasks = [
        name
        for name, about in cache["tasks"].items()
        if schedule == "constant" or about["one_cycle"]
    ]
    out: dict[str, Any] = {}
    for task in tasks:
        truth = TaskTruth(cache, task, schedule)
        picks = lr_widget_picks(cache, task) | anchor_picks(cache, task)
        for rule in dict.fromkeys((CONFIRM_RULE, DEFAULT_RULE, "minimum_third", "steep_minimum")):
            if rule in picks:
                picks[f"{rule} + confirm"] = confirm_picks(truth, picks[rule], False)
                picks[f"{rule} + confirm if decisive"] = confirm_picks(truth, picks[rule], True)
        out[task] = {
            "best_lr": truth.best_lr,
            "best_score": truth.best,
            "regrets": {method: truth.regret(p) for method, p in picks.items()},
            "picks": {method: list(p.values()) for method, p in picks.items()},
        }
    return out


def summarise(scored: dict[str, Any], tasks: Sequence[str]) -> dict[str, dict[str, float]]:
    present = [task for task in tasks if task in scored]
    methods = scored[present[0]]["regrets"] if present else {}
    summary = {}
    for method in methods:
        regrets = [scored[task]["regrets"][method] for task in present]
        summary[method] = {
            "geo_mean": geometric_mean([max(1 + r, 1e-9) for r in regrets]),
            "within_10pct": sum(r <= WITHIN for r in regrets),
            "tasks": len(present),
            "worst": max(regrets),
        }
    return summary


def leave_one_out(
    scored: dict[str, Any], tasks: Sequence[str], candidates: Callable[[str], bool]
) -> dict[str, Any]:
    """Cross-validation over ``tasks``: for each, the candidate best on the others, and its
    factor on the one left out; the geometric mean of those is the cross-validated score."""
    present = [task for task in tasks if task in scored]
    chosen, factors = {}, []
    for left_out in present:
        others = summarise(scored, [task for task in present if task != left_out])
        names = [name for name in others if candidates(name)]
        best = min(names, key=lambda name: (others[name]["geo_mean"], name))
        chosen[left_out] = best
        factors.append(1 + scored[left_out]["regrets"][best])
    full = summarise(scored, present)
    names = [name for name in full if candidates(name)]
    pick = min(names, key=lambda name: (full[name]["geo_mean"], name))
    return {"cv_geo_mean": geometric_mean(factors), "chosen_per_fold": chosen, "pick": pick}


def _is_single_sweep_rule(name: str) -> bool:
    return not any(part in name for part in ("/valley", "/steep", "/slide", "fastai", "lightning",
                                             "torch-lr", "repeats", "confirm", "EMA"))  # fmt: skip


def _is_plain_confirmation(name: str) -> bool:
    return name.endswith(" + confirm")


def report(cache: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {
        "dev_tasks": list(DEV_TASKS),
        "held_out_tasks": list(HELD_OUT_TASKS),
    }
    for schedule in ("constant", "one-cycle"):
        scored = score_methods(cache, schedule)
        document[schedule] = {
            "tasks": scored,
            "dev": summarise(scored, DEV_TASKS),
            "held_out": summarise(scored, HELD_OUT_TASKS),
            "all": summarise(scored, list(scored)),
            "selection": leave_one_out(scored, DEV_TASKS, _is_single_sweep_rule),
            "confirm_selection": leave_one_out(scored, DEV_TASKS, _is_plain_confirmation),
        }
    return document


def main(argv: Sequence[str] | None = None) -> int:
    from benchmarks import report as results_report

    cache = json.loads(CACHE_PATH.read_text())
    document = report(cache)
    (RESULTS_DIR / "quality-rescored.json").write_text(json.dumps(document, indent=1))
    path = results_report.write_results(RESULTS_DIR)
    print(markdown(document))
    print(f"wrote {RESULTS_DIR / 'quality-rescored.json'} and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
