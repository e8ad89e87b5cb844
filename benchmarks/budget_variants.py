"""Other shapes of the ``for_length`` rule, each chosen and scored exactly as the library's rule
is, and reported beside it in RESULTS.md: the evidence that the simple rule leaves no easy gain.

Every variant is a family of rules over a small grid of constants. Leave-one-task-out over the
development tasks (:func:`benchmarks.budget_rescore.choose`: every length of the left-out task
held out together) gives its cross-validated score; the constants best on all development tasks
are then scored on the held-out tasks at each length. A variant with more constants can only fit
the development tasks better, so the cross-validated score is the one to compare.

* **the library's shape**: ``lowest / (d * (N/100) ** a)``, the family the rule is chosen from;
* **length capped at E epochs**: the length counted only up to ``E`` passes over the data (on a
  small data set a long run keeps its best checkpoint early, so its best LR may stop falling);
* **exponent / divisor by optimizer**: separate constants for the Adam family and for SGD;
* **reference nearer the descent**: halfway (in log LR) between the lowest point and the first LR
  where the loss has made ``q`` of its fall (the lowest point of a flat-bottomed curve is noise);
* **reference toward the rise**: part way from the lowest point to where the loss climbs back
  past ``frac`` of its fall (the stability limit, which the 100-step sweep reaches reliably);
* **probes around the pick**: three probes at 1/3, 1 and 3 times the rule's pick, the winner
  divided by ``c`` (a correction for the short horizon's bias toward the largest LR).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks import quality_cache as qc

__all__ = ["VARIANTS", "TaskFacts", "Variant", "study", "task_facts"]

Params = tuple[float, ...]
Picks = dict[int, float | None]
DIVISORS = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)
EXPONENTS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)


@dataclass(frozen=True)
class TaskFacts:
    """What the variants read about one task: per seed, the LR the library's rule divides and
    the prepared lag-free curve (``None`` where it has no answer or is flat), the data set's
    steps per epoch, whether the optimizer is of the Adam family, and the probe reader."""

    lowest: Picks
    curves: dict[int, Any]
    steps_per_epoch: int
    adaptive: bool
    probe: Callable[[int, float | None, int], float | None]
    """``probe(seed, centre, steps)``: the winner of three probes around ``centre``."""


@dataclass(frozen=True)
class Variant:
    """One shape of the rule: its name, what it changes, its grid and how it picks."""

    name: str
    grid: tuple[Params, ...]
    pick: Callable[[TaskFacts, int, int, Params], float | None]
    """``pick(facts, seed, train_steps, constants)``."""


def divisor(d: float, a: float, steps: float) -> float:
    """The family's divisor, clamped as the library clamps it."""
    value: float = d * (steps / 100) ** a  # float ** float is typed Any
    return min(max(value, 1.0), 100.0)


def _base(facts: TaskFacts, seed: int, steps: int, p: Params) -> float | None:
    lowest = facts.lowest[seed]
    return None if lowest is None else lowest / divisor(p[0], p[1], steps)


def _capped(facts: TaskFacts, seed: int, steps: int, p: Params) -> float | None:
    lowest = facts.lowest[seed]
    counted = min(steps, p[2] * facts.steps_per_epoch)
    return None if lowest is None else lowest / divisor(p[0], p[1], counted)


def _exponent_by_optimizer(facts: TaskFacts, seed: int, steps: int, p: Params) -> float | None:
    lowest = facts.lowest[seed]
    exponent = p[1] if facts.adaptive else p[2]
    return None if lowest is None else lowest / divisor(p[0], exponent, steps)


def _divisor_by_optimizer(facts: TaskFacts, seed: int, steps: int, p: Params) -> float | None:
    lowest = facts.lowest[seed]
    d = p[0] if facts.adaptive else p[1]
    return None if lowest is None else lowest / divisor(d, p[2], steps)


def descent_point(lrs: np.ndarray, losses: np.ndarray, q: float) -> float:
    """The first LR where the curve has made ``q`` of its fall to its lowest point."""
    lowest = int(np.argmin(losses))
    top = float(np.max(losses[: lowest + 1]))
    threshold = losses[lowest] + (1 - q) * (top - losses[lowest])
    return float(lrs[int(np.argmax(losses[: lowest + 1] <= threshold))])


def rise_point(lrs: np.ndarray, losses: np.ndarray, frac: float) -> float:
    """The first LR past the lowest point where the loss has climbed back ``frac`` of its fall
    (the curve's last LR if it never does)."""
    lowest = int(np.argmin(losses))
    threshold = losses[lowest] + frac * (losses[0] - losses[lowest])
    above = np.flatnonzero(losses[lowest:] > threshold)
    return float(lrs[lowest + above[0]] if above.size else lrs[-1])


def _reference(
    point: Callable[[np.ndarray, np.ndarray, float], float],
) -> Callable[[TaskFacts, int, int, Params], float | None]:
    """A rule dividing ``lowest ** (1 - mix) * point ** mix`` (``p = (arg, mix, d, a)``) in
    place of the lowest point; flat or unreadable curves keep the library's reference."""

    def pick(facts: TaskFacts, seed: int, steps: int, p: Params) -> float | None:
        lowest, curve = facts.lowest[seed], facts.curves[seed]
        if lowest is None:
            return None
        reference = lowest
        if curve is not None:
            other = point(np.asarray(curve.lrs), np.asarray(curve.losses), p[0])
            reference = math.exp((1 - p[1]) * math.log(lowest) + p[1] * math.log(other))
        return reference / divisor(p[2], p[3], steps)

    return pick


def _probed(facts: TaskFacts, seed: int, steps: int, p: Params) -> float | None:
    from lr_widget.suggestions.length import DIVISOR_AT_REFERENCE, LENGTH_EXPONENT

    centre = _base(facts, seed, steps, (DIVISOR_AT_REFERENCE, LENGTH_EXPONENT))
    winner = facts.probe(seed, centre, int(p[0]))
    return None if winner is None else winner / p[1]


VARIANTS = (
    Variant("the library's shape, lowest / (d (N/100)^a)",
            tuple(itertools.product(DIVISORS, EXPONENTS)), _base),
    Variant("length capped at E epochs",
            tuple(itertools.product(DIVISORS, EXPONENTS, (3, 10, 30, 100))), _capped),
    Variant("exponent by optimizer (Adam family, SGD)",
            tuple(itertools.product(DIVISORS, EXPONENTS, EXPONENTS)), _exponent_by_optimizer),
    Variant("divisor by optimizer (Adam family, SGD)",
            tuple(itertools.product(DIVISORS, DIVISORS, EXPONENTS)), _divisor_by_optimizer),
    Variant("reference halfway to where q of the fall is made",
            tuple(itertools.product((0.7, 0.8, 0.9, 0.95), (0.5,), DIVISORS, EXPONENTS)),
            _reference(descent_point)),
    Variant("reference part way to the rise",
            tuple(itertools.product((0.5, 1.0), (0.25, 0.5), (*DIVISORS, 10, 15, 20), EXPONENTS)),
            _reference(rise_point)),
    Variant("probes at 1/3, 1, 3 x the pick, winner / c",
            tuple(itertools.product((30, 100, 300), (1.0, 1.5, 2.0, 3.0, 4.0))), _probed),
)  # fmt: skip
"""Every variant tried, the library's own shape first."""


def task_facts(
    quality: dict[str, Any], budget: dict[str, Any], task: str, lowest: Picks
) -> TaskFacts:
    """The facts the variants read about ``task`` (its sweeps from the quality cache)."""
    from benchmarks.budget_rescore import probe_pick
    from benchmarks.rescore import sweep_runs
    from benchmarks.tasks import get_task
    from lr_widget.suggestions.curve import prepare

    curves: dict[int, Any] = {}
    for seed in qc.SEEDS:
        sweep = sweep_runs(quality, task, seed)[0]
        curve = prepare(sweep.lrs, sweep.lag_free_curve, sweep.curve_noise)
        curves[seed] = None if isinstance(curve, str) or curve.flat is not None else curve
    spec = get_task(task)
    examples = len(spec.load_data().train_x)
    adaptive = "adam" in spec.optimizer_name.lower()

    def probe(seed: int, centre: float | None, steps: int) -> float | None:
        return probe_pick(quality, budget, task, seed, centre, steps)

    return TaskFacts(lowest, curves, max(1, examples // spec.batch_size), adaptive, probe)


def _key(params: Params) -> str:
    return ", ".join(f"{value:g}" for value in params)


def study(
    truths: Mapping[str, Sequence[Any]], facts: Mapping[str, TaskFacts], dev: Sequence[str],
    held: Sequence[str],
) -> list[dict[str, Any]]:  # fmt: skip
    """Per variant: its grid's size, the cross-validated score on ``dev``, the constants chosen
    on all of ``dev`` and their held-out score per length (``truths``: each task's
    :class:`~benchmarks.budget_rescore.LengthTruth` list)."""
    from benchmarks.budget_rescore import choose, summarise

    out = []
    for variant in VARIANTS:
        scored: dict[str, dict[int, dict[str, float]]] = {}
        for task in [*dev, *held]:
            scored[task] = {}
            for truth in truths[task]:
                scored[task][truth.factor] = {
                    _key(params): truth.regret({
                        seed: variant.pick(facts[task], seed, truth.length, params)
                        for seed in qc.SEEDS
                    })
                    for params in variant.grid
                }  # fmt: skip
        selection = choose(scored, dev, lambda _: True)
        chosen = selection["pick"]
        only = {t: {f: {chosen: by[chosen]} for f, by in at.items()} for t, at in scored.items()}
        factors = sorted({f for at in scored.values() for f in at})
        out.append({
            "variant": variant.name,
            "grid_size": len(variant.grid),
            "cv_geo_mean": selection["cv_geo_mean"],
            "pick": chosen,
            "dev_geo_mean": summarise(only, dev, None)[chosen]["geo_mean"],
            "held_out": {
                **{str(f): summarise(only, held, f)[chosen] for f in factors},
                "all": summarise(only, held, None)[chosen],
            },
        })  # fmt: skip
    return out
