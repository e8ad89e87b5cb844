"""Turning grids, sweeps and training runs into regrets: the arithmetic of the quality benchmark.

Pure functions on plain data (floats, lists, dicts), so they are tested without training
anything. Conventions:

* a *score* is a training run's validation loss, or its initial validation loss when it
  diverged or ended worse (see :class:`benchmarks.tasks.TrainOutcome`);
* the *best* of a task is the lowest mean score over seeds on the grid of constant LRs;
* a *method* is a finder configuration plus a rule (``"lr_widget/valley"``); for each seed it
  suggests one LR (or none), and the model is trained at that LR with that seed;
* a method's *regret* on a task is its mean score over seeds divided by the best, minus one; a
  seed whose method gave no answer scores the initial validation loss.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from benchmarks.stats import geometric_mean, regret

__all__ = [
    "COMBINATIONS",
    "best_on_grid",
    "combine",
    "log_geometric_mean",
    "log_median",
    "method_regret",
    "rank_methods",
    "summarise_methods",
]

WITHIN = 0.10
"""A suggestion "lands" when its regret is at most this (10% above the best loss)."""


def best_on_grid(grid: Mapping[float, Sequence[float]]) -> tuple[float, float]:
    """The grid LR with the lowest mean score, and that mean.

    >>> best_on_grid({1e-3: [0.5, 0.7], 1e-2: [0.4, 0.6], 1e-1: [2.0, 2.0]})
    (0.01, 0.5)
    """
    if not grid:
        raise ValueError("the grid is empty")
    means = {lr: statistics.fmean(scores) for lr, scores in grid.items()}
    best_lr = min(means, key=lambda lr: (means[lr], lr))
    return best_lr, means[best_lr]


def log_geometric_mean(lrs: Iterable[float | None]) -> float | None:
    """The geometric mean of the LRs that are not ``None`` (``None`` if there are none)."""
    present = [lr for lr in lrs if lr is not None and lr > 0]
    return geometric_mean(present) if present else None


def log_median(lrs: Iterable[float | None]) -> float | None:
    """The median in log space of the LRs that are not ``None`` (``None`` if none).

    >>> log_median([1e-3, None, 1e-1, 1e-2])
    0.01
    """
    present = [math.log(lr) for lr in lrs if lr is not None and lr > 0]
    return round(math.exp(statistics.median(present)), 15) if present else None


COMBINATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "valley*minimum": ("geometric mean", ("valley", "minimum")),
    "median of rules": ("log median", ("steep", "valley", "minimum", "slide")),
}
"""Rules combined from one sweep's suggestions: name -> (how, which rules)."""


def combine(suggestions: Mapping[str, float | None]) -> dict[str, float | None]:
    """Every combination of :data:`COMBINATIONS` computed from one sweep's suggestions."""
    combined: dict[str, float | None] = {}
    for name, (how, rules) in COMBINATIONS.items():
        values = [suggestions.get(rule) for rule in rules]
        if how == "geometric mean":
            # Both must answer: a lone rule is not the combination.
            combined[name] = None if None in values else log_geometric_mean(values)
        else:
            combined[name] = log_median(values)
    return combined


def method_regret(
    picks: Sequence[tuple[int, float | None]],
    scores: Mapping[tuple[float, int], float],
    initial: Mapping[int, float],
    best: float,
) -> dict[str, Any]:
    """A method's regret on one task from its picks and the training scores.

    ``picks`` holds ``(seed, lr)`` pairs (``lr`` ``None`` for no answer); ``scores[(lr, seed)]``
    is the score of training at ``lr`` with ``seed``; ``initial[seed]`` the initial validation
    loss, used for a missing answer.
    """
    values = [
        initial[seed] if lr is None else scores[(lr, seed)]
        for seed, lr in picks
    ]  # fmt: skip
    mean = statistics.fmean(values)
    return {
        "regret": regret(mean, best),
        "mean_score": mean,
        "lr": log_geometric_mean(lr for _, lr in picks),
        "lrs": [lr for _, lr in picks],
        "no_answer": sum(lr is None for _, lr in picks),
    }


def summarise_methods(
    regrets: Mapping[str, Mapping[str, float]], tasks: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Across ``tasks``: each method's geometric mean of (1 + regret) and its hits within 10%.

    ``regrets[method][task]`` is the method's regret on that task; a method missing a task is
    left out of the summary.
    """
    summary = {}
    for method, by_task in regrets.items():
        if not all(task in by_task for task in tasks):
            continue
        factors = [1.0 + by_task[task] for task in tasks]
        summary[method] = {
            "geo_mean_factor": geometric_mean([max(f, 1e-12) for f in factors]),
            "within_10pct": sum(by_task[task] <= WITHIN for task in tasks),
            "worst_regret": max(by_task[task] for task in tasks),
            "tasks": len(tasks),
        }
    return summary


def rank_methods(summary: Mapping[str, Mapping[str, Any]], candidates: Iterable[str]) -> list[str]:
    """``candidates`` ordered best first: lowest geometric-mean factor, then most hits, then
    smallest worst case, then name."""
    present = [name for name in candidates if name in summary]
    return sorted(
        present,
        key=lambda name: (
            round(summary[name]["geo_mean_factor"], 6),
            -summary[name]["within_10pct"],
            summary[name]["worst_regret"],
            name,
        ),
    )
