"""Score every suggestion against the best LR at realistic training lengths, offline, in seconds.

``python -m benchmarks.budget_rescore`` reads the 1x ground truth and the sweeps of
``results/quality-cache.json`` and the longer runs of ``results/budget-cache.json``
(:mod:`benchmarks.budget_cache`), writes ``results/budget-rescored.json`` and regenerates
``RESULTS.md``. No training happens here.

* **Truth per task and length**: every LR known at that length (the 1x grid, or the window run
  to 6x and 30x, plus the LRs that diverged within 1x, which score the starting loss), seeds 0-2;
  best = lowest mean score. A pick is scored by interpolating its seed's scores linearly in
  ``log10(lr)``; beyond the known LRs the end value holds (a pick below a long length's window
  is counted in ``below_window``: its score is then optimistic).
* **Methods**: every lr_widget rule (the default ``for_length`` with the length given, and with
  it not given); the ``for_length`` family over a grid of its two constants, chosen by
  leave-one-task-out over the development tasks and every length at once; the confirmation
  probes at 30 steps (as ``find_lr(confirm=True)``) and longer; the anchors (fastai, Lightning,
  torch-lr-finder at their defaults), a successive-halving grid and Prodigy's estimate.
* **Oracle**: the best LR of the window chosen on seeds 3-5, scored on seeds 0-2 like any pick:
  what choosing on other seeds achieves, the reading of "within 10%".
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks import budget_cache as bc
from benchmarks import budget_variants
from benchmarks import quality_cache as qc
from benchmarks.budget_report import ORACLE, readme_with_table
from benchmarks.common import RESULTS_DIR
from benchmarks.rescore import anchor_picks, interpolated_score, lr_widget_picks, sweep_runs
from benchmarks.split import DEV_TASKS, HELD_OUT_TASKS
from benchmarks.stats import geometric_mean
from benchmarks.tasks import RECORDED_TRAIN_LOSSES, get_task

__all__ = [
    "DIVISOR_GRID",
    "EXPONENT_GRID",
    "LengthTruth",
    "main",
    "report",
    "successive_halving",
]

WITHIN = 0.10
HEADLINE_SCORING = bc.SCORINGS[0]
"""Runs scored at their best checkpoint: see :data:`benchmarks.budget_cache.SCORINGS`."""
DIVISOR_GRID = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0)
"""Divisors at 100 steps tried for the ``for_length`` family."""
EXPONENT_GRID = (0.0, 0.1, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6)
"""Exponents tried: how fast the divisor grows with the training length."""
ASSUMED_GRID = (100, 300, 1000, 3000, 10000)
"""Lengths tried as the one to assume when the user gives none."""
PROBE_LENGTHS = (30, 100, 300, 600)
"""Probe lengths of the confirmation variants (steps per probe, three probes)."""
HALVING_LRS = tuple(range(0, 25, 4))
"""Grid indices of the successive-halving anchor: one LR per decade, 1e-5 to 10."""
Picks = dict[int, float | None]


# -- ground truth -------------------------------------------------------------------------------
@dataclass
class LengthTruth:
    """One task's ground truth at one length: known LRs and each seed's score there."""

    task: str
    length: int
    factor: int
    lrs: list[float]
    scores: dict[int, list[float]]
    initial: dict[int, float]
    oracle_scores: dict[int, list[float]]
    window_low: float

    @property
    def means(self) -> NDArray[np.float64]:
        means: NDArray[np.float64] = np.mean([self.scores[seed] for seed in qc.SEEDS], axis=0)
        return means

    @property
    def best_index(self) -> int:
        return int(np.argmin(self.means))

    @property
    def best_lr(self) -> float:
        return self.lrs[self.best_index]

    @property
    def best(self) -> float:
        return float(self.means[self.best_index])

    def score(self, seed: int, lr: float | None) -> float:
        if lr is None or not math.isfinite(lr) or lr <= 0:
            return self.initial[seed]
        return interpolated_score(self.lrs, self.scores[seed], lr)

    def regret(self, picks: Picks) -> float:
        values = [self.score(seed, lr) for seed, lr in picks.items() if seed in qc.SEEDS]
        return float(np.mean(values)) / self.best - 1.0

    def noise(self) -> float:
        """Seed-to-seed spread at the best LR: standard deviation over mean."""
        values = [self.scores[seed][self.best_index] for seed in qc.SEEDS]
        return float(np.std(values, ddof=1) / np.mean(values))

    def oracle_regret(self) -> float | None:
        """The LR best on seeds 3-5 (window LRs), scored on seeds 0-2; None without them."""
        if not self.oracle_scores:
            return None
        known = [i for i in range(len(self.lrs)) if all(
            not math.isnan(self.oracle_scores[seed][i]) for seed in bc.ORACLE_SEEDS
        )]  # fmt: skip
        means = [np.mean([self.oracle_scores[seed][i] for seed in bc.ORACLE_SEEDS]) for i in known]
        chosen = known[int(np.argmin(means))]
        return self.regret({seed: self.lrs[chosen] for seed in qc.SEEDS})


def truths(
    quality: dict[str, Any],
    budget: dict[str, Any],
    task: str,
    scoring: str,
    schedule: str = "constant",
) -> list[LengthTruth]:
    """The task's truth at every length, scored by ``scoring``; [] until its window is settled.
    ``schedule="one-cycle"``: the LR is the peak of a one-cycle schedule as long as the run (its
    window only beyond 1x, and no oracle: its seeds 3-5 ran at constant LR)."""
    short = bc._short_truth(quality, task, schedule)
    if short is None:
        return []
    window, settled = bc._window(budget, short, task, schedule)
    if not settled:
        return []
    grid, lengths = list(qc.GRID), bc.lengths_of(task)
    initial = {seed: float(short[seed][0]["initial"]) for seed in qc.SEEDS}
    # Beyond the window, a constant LR that diverged at 1x diverges at every length (the longer
    # runs start with the 1x run's steps); a one-cycle schedule of another length does not.
    above = [
        i for i in range(window.stop, len(grid))
        if schedule == "constant" and all(bc.diverged_short(short, i, seed) for seed in qc.SEEDS)
    ]  # fmt: skip
    out: list[LengthTruth] = []
    for factor, length in zip(bc.LENGTH_FACTORS, lengths, strict=True):
        # 1x: the whole grid (its runs outside the window are the 1x runs, scored at their end)
        indices = list(range(len(grid))) if factor == 1 else [*window, *above]
        scores: dict[int, list[float]] = {}
        for seed in qc.SEEDS:
            row = []
            for i in indices:
                value = bc._score(budget, short, task, schedule, i, seed, length, scoring)
                if value is None and factor == 1:
                    value = float(short[seed][i]["score"])
                if value is None:
                    return out
                row.append(value)
            scores[seed] = row
        oracle = _oracle(budget, task, grid, length, indices, scoring)
        out.append(LengthTruth(
            task, length, factor, [grid[i] for i in indices], scores, initial,
            oracle if schedule == "constant" else {}, grid[window.start],
        ))  # fmt: skip
    return out


def _oracle(
    budget: dict[str, Any], task: str, grid: Sequence[float], length: int, indices: Iterable[int],
    scoring: str,
) -> dict[int, list[float]]:  # fmt: skip
    """Seeds 3-5's scores at ``indices`` (NaN where unknown); {} when none is known."""
    table = {}
    for seed in bc.ORACLE_SEEDS:
        row = []
        for i in indices:
            value = bc._long_score(budget, "constant", task, grid[i], seed, length, scoring)
            row.append(math.nan if value is None else value)
        table[seed] = row
    known = all(any(not math.isnan(v) for v in row) for row in table.values())
    return table if known else {}


# -- picks --------------------------------------------------------------------------------------
def length_family_pick(
    lowest: float | None, divisor: float, exponent: float, steps: int
) -> float | None:
    """The ``for_length`` family's pick: ``lowest / (divisor * (steps / 100) ** exponent)``."""
    if lowest is None:
        return None
    factor: float = divisor * (steps / 100) ** exponent  # float ** float is typed Any
    return lowest / min(max(factor, 1.0), 100.0)


def successive_halving(quality: dict[str, Any], task: str, seed: int) -> float | None:
    """A careful user's short-run grid: one LR per decade (1e-5 to 10) trained 10 steps, the 3
    lowest (mean of steps 6-10) trained on to 40 steps, the lowest (mean of steps 31-40) taken:
    160 steps, within the 190 of a sweep and its confirmation probes."""
    jobs = quality["jobs"]

    def losses(index: int) -> list[float]:
        key = f"train|constant|{task}|{qc.lr_key(qc.GRID[index])}|{seed}"
        return [float(v) for v in jobs[key]["train_losses"]]

    def mean_loss(index: int, start: int, stop: int) -> float:
        values = losses(index)[start:stop]
        if len(values) < stop - start or not all(math.isfinite(v) for v in values):
            return math.inf
        return float(np.mean(values))

    first = sorted(HALVING_LRS, key=lambda i: mean_loss(i, 5, 10))[:3]
    best = min(first, key=lambda i: mean_loss(i, 30, 40))
    return None if not math.isfinite(mean_loss(best, 30, 40)) else float(qc.GRID[best])


def probe_pick(
    quality: dict[str, Any], budget: dict[str, Any], task: str, seed: int, centre: float | None,
    steps: int,
) -> float | None:  # fmt: skip
    """Three probes of ``steps`` steps at 1/3, 1 and 3 times ``centre`` (the grid LR nearest
    each), read as the mean training loss of their last 10 steps; the lowest wins. 30-step
    probes read the 1x runs' first losses, longer ones the long runs' block losses (window LRs
    only: a candidate outside the window keeps the centre)."""
    if centre is None:
        return None
    readings = []
    for factor in (1 / 3, 1.0, 3.0):
        index = int(np.argmin(np.abs(np.log10(qc.GRID) - math.log10(centre * factor))))
        lr = qc.GRID[index]
        if steps <= RECORDED_TRAIN_LOSSES:
            key = f"train|constant|{task}|{qc.lr_key(lr)}|{seed}"
            losses = quality["jobs"][key]["train_losses"][steps - 10 : steps]
            value = float(np.mean(losses)) if len(losses) == 10 else math.inf
        else:
            end = bc.lengths_of(task)[-1]
            reply = budget["jobs"].get(bc.long_key("constant", task, lr, seed, end))
            if reply is None:
                diverged_key = f"train|constant|{task}|{qc.lr_key(lr)}|{seed}"
                if quality["jobs"][diverged_key]["diverged"]:
                    value = math.inf
                else:
                    return centre
            else:
                blocks = reply["block_train_losses"]
                value = float(blocks[steps // 10 - 1]) if len(blocks) >= steps // 10 else math.inf
        readings.append((value if math.isfinite(value) else math.inf, centre * factor))
    return min(readings)[1]


@dataclass
class TaskPicks:
    """What every length-independent method picked on one task (seeds 0-2), and the lowest
    point of each seed's sweep (the ``for_length`` family reads it)."""

    fixed: dict[str, Picks]
    lowest: Picks
    steep: Picks


def reference_points(quality: dict[str, Any], task: str) -> tuple[Picks, Picks]:
    """Per seed, what the library reads off its sweep: the LR the ``for_length`` family divides
    (the lowest point, or where the loss starts to rise on a flat curve), and the centre of a
    confirmation (:func:`~lr_widget.results.confirmation.confirm_centre`)."""
    from lr_widget.results.confirmation import confirm_centre
    from lr_widget.suggestions.length import LENGTH_RULE, REFERENCE_STEPS, divisor_for

    reference: Picks = {}
    centres: Picks = {}
    for seed in qc.SEEDS:
        sweep = sweep_runs(quality, task, seed)[0]
        at_reference = sweep.suggest(LENGTH_RULE, REFERENCE_STEPS).lr
        reference[seed] = (
            None if at_reference is None else at_reference * divisor_for(REFERENCE_STEPS)
        )
        centre = confirm_centre(sweep.suggestions())
        centres[seed] = None if centre is None else centre.lr
    return reference, centres


def task_picks(quality: dict[str, Any], budget: dict[str, Any], task: str) -> TaskPicks:
    picks = lr_widget_picks(quality, task) | anchor_picks(quality, task)
    picks = {
        name: p for name, p in picks.items()
        if not name.startswith(("EMA ", "3 repeats")) and "width" not in name
    }  # fmt: skip
    picks["for_length, length not given"] = picks.pop("for_length")
    lowest, centres = reference_points(quality, task)
    picks["successive halving (160 steps)"] = {
        seed: successive_halving(quality, task, seed) for seed in qc.SEEDS
    }
    prodigy = {seed: budget["jobs"].get(qc.job_key(("prodigy", task, seed))) for seed in qc.SEEDS}
    if all(reply is not None and "lr" in reply for reply in prodigy.values()):
        picks["Prodigy d (190 steps)"] = {
            seed: float(reply["lr"]) for seed, reply in prodigy.items() if reply is not None
        }
    for steps in PROBE_LENGTHS:
        picks[f"minimum + confirm ({steps}-step probes)"] = {
            seed: probe_pick(quality, budget, task, seed, centres[seed], steps) for seed in qc.SEEDS
        }
    return TaskPicks(picks, lowest, picks["steep"])


# -- scoring ------------------------------------------------------------------------------------
def score_task(truth: LengthTruth, found: TaskPicks) -> dict[str, float]:
    """Every method's regret at this length (the family over its grid included)."""
    regrets = {name: truth.regret(p) for name, p in found.fixed.items()}
    regrets["for_length, length given"] = truth.regret(
        {
            seed: length_family_pick(found.lowest[seed], *_chosen(), truth.length)
            for seed in qc.SEEDS
        }
    )
    for divisor, exponent in itertools.product(DIVISOR_GRID, EXPONENT_GRID):
        picks = {seed: length_family_pick(found.lowest[seed], divisor, exponent, truth.length)
                 for seed in qc.SEEDS}  # fmt: skip
        regrets[_family(divisor, exponent)] = truth.regret(picks)
        for assumed in ASSUMED_GRID:
            unknown = {seed: length_family_pick(found.lowest[seed], divisor, exponent, assumed)
                       for seed in qc.SEEDS}  # fmt: skip
            regrets[_family(divisor, exponent, assumed)] = truth.regret(unknown)
    return regrets


def _chosen() -> tuple[float, float]:
    from lr_widget.suggestions import length

    return length.DIVISOR_AT_REFERENCE, length.LENGTH_EXPONENT


def _family(divisor: float, exponent: float, assumed: int | None = None) -> str:
    name = f"family /{divisor:g} x(N/100)^{exponent:g}"
    return name if assumed is None else f"{name} assuming {assumed}"


def _is_family(name: str, assumed: bool) -> bool:
    return name.startswith("family ") and (" assuming " in name) == assumed


def summarise(
    scored: dict[str, dict[int, dict[str, float]]], tasks: Sequence[str], factor: int | None
) -> dict[str, dict[str, float]]:
    """Per method: geo-mean of (1 + regret) and tasks within 10%, over ``tasks`` at length
    ``factor`` (``None``: every length, each task-length one entry)."""
    cells = [
        (task, f) for task in tasks if task in scored for f in scored[task]
        if factor is None or f == factor
    ]  # fmt: skip
    if not cells:
        return {}
    methods = set.union(*(set(scored[t][f]) for t, f in cells))
    out = {}
    # Sorted: a set's order changes from run to run, and so would the saved file.
    for method in sorted(methods):  # one missing on some tasks (Prodigy: Adam only): the rest
        regrets = [scored[t][f][method] for t, f in cells if method in scored[t][f]]
        out[method] = {
            "geo_mean": geometric_mean([max(1 + r, 1e-9) for r in regrets]),
            "within_10pct": sum(r <= WITHIN for r in regrets),
            "count": len(regrets),
        }
    return out


def choose(
    scored: dict[str, dict[int, dict[str, float]]], tasks: Sequence[str],
    candidates: Callable[[str], bool],
) -> dict[str, Any]:  # fmt: skip
    """Leave-one-task-out over ``tasks`` (every length of the left-out task held out together):
    each fold's pick, its factor on the left-out task's lengths, and the pick on all of them."""
    present = [task for task in tasks if task in scored]
    chosen, factors = {}, []
    for left_out in present if len(present) > 1 else []:
        others = summarise(scored, [t for t in present if t != left_out], None)
        best = min((m for m in others if candidates(m)), key=lambda m: (others[m]["geo_mean"], m))
        chosen[left_out] = best
        factors += [1 + scored[left_out][f][best] for f in scored[left_out]]
    full = summarise(scored, present, None)
    pick = min((m for m in full if candidates(m)), key=lambda m: (full[m]["geo_mean"], m))
    cross_validated = geometric_mean(factors) if factors else math.nan
    return {"cv_geo_mean": cross_validated, "chosen_per_fold": chosen, "pick": pick}


def report(quality: dict[str, Any], budget: dict[str, Any]) -> dict[str, Any]:
    """Everything the RESULTS section shows, for each way of scoring a run, as one JSON-able
    document; ``HEADLINE_SCORING`` chooses the rule."""
    document: dict[str, Any] = {"headline_scoring": HEADLINE_SCORING, "scorings": {}}
    picks_cache: dict[str, TaskPicks] = {}
    for scoring in bc.SCORINGS:
        document["scorings"][scoring] = _scored(quality, budget, scoring, picks_cache)
    return document


def _scored(
    quality: dict[str, Any], budget: dict[str, Any], scoring: str, picks: dict[str, TaskPicks]
) -> dict[str, Any]:
    scored: dict[str, dict[int, dict[str, float]]] = {}
    tasks: dict[str, Any] = {}
    known_by_task: dict[str, list[LengthTruth]] = {}
    for task in [*DEV_TASKS, *HELD_OUT_TASKS]:
        known = truths(quality, budget, task, scoring)
        if len(known) < len(bc.LENGTH_FACTORS):
            continue  # a task counts once every length is known
        known_by_task[task] = known
        if task not in picks:
            picks[task] = task_picks(quality, budget, task)
        found = picks[task]
        scored[task] = {truth.factor: score_task(truth, found) for truth in known}
        for truth in known:
            oracle = truth.oracle_regret()
            if oracle is not None:
                scored[task][truth.factor][ORACLE] = oracle
        tasks[task] = {
            str(truth.factor): {
                "length": truth.length,
                "best_lr": truth.best_lr,
                "best_score": truth.best,
                "noise": truth.noise(),
                "oracle_regret": truth.oracle_regret(),
                "below_window": {
                    name: sum(lr is not None and lr < truth.window_low for lr in p.values())
                    for name, p in found.fixed.items()
                },
            }
            for truth in known
        }
    dev = [t for t in DEV_TASKS if t in scored]
    held = [t for t in HELD_OUT_TASKS if t in scored]
    part: dict[str, Any] = {"dev_tasks": dev, "held_out_tasks": held, "tasks": tasks}
    if dev:
        part["selection"] = choose(scored, dev, lambda m: _is_family(m, assumed=False))
        # the same constants, and the length to assume when none is given
        chosen = part["selection"]["pick"] + " assuming "
        part["assumed_selection"] = choose(scored, dev, lambda m: m.startswith(chosen))
    # Of the family's grid, only the chosen members are kept: the selection is the result, and
    # 300-odd variants per task and length would make the file a hundred times larger.
    kept = {part[key]["pick"] for key in ("selection", "assumed_selection") if key in part}
    scored = {
        task: {
            f: {m: r for m, r in by.items() if not _is_grid(m) or m in kept} for f, by in at.items()
        }
        for task, at in scored.items()
    }
    part["per_length"] = {
        "all" if factor is None else str(factor): {
            "dev": summarise(scored, dev, factor), "held_out": summarise(scored, held, factor)
        }
        for factor in (*bc.LENGTH_FACTORS, None)
    }  # fmt: skip
    part["regrets"] = {task: {str(f): r for f, r in by.items()} for task, by in scored.items()}
    part["one_cycle"] = _one_cycle(quality, budget, scoring, picks)
    if scoring == HEADLINE_SCORING and dev and held:
        facts = {
            task: budget_variants.task_facts(quality, budget, task, picks[task].lowest)
            for task in known_by_task
        }
        part["variants"] = budget_variants.study(known_by_task, facts, dev, held)
    return part


def _one_cycle(
    quality: dict[str, Any], budget: dict[str, Any], scoring: str, picks: dict[str, TaskPicks]
) -> dict[str, Any]:
    """The tasks trained with the LR as the peak of a one-cycle schedule as long as the run: every
    length-independent pick (the library's one-cycle rule among them) and ``for_length`` scored
    against that truth, per length."""
    scored: dict[str, dict[int, dict[str, float]]] = {}
    for task in [*DEV_TASKS, *HELD_OUT_TASKS]:
        if not get_task(task).one_cycle or task not in picks:
            continue
        known = truths(quality, budget, task, scoring, "one-cycle")
        if len(known) < len(bc.LENGTH_FACTORS):
            continue
        scored[task] = {
            truth.factor: {m: r for m, r in score_task(truth, picks[task]).items()
                           if not _is_grid(m)}
            for truth in known
        }  # fmt: skip
    dev = [t for t in DEV_TASKS if t in scored]
    held = [t for t in HELD_OUT_TASKS if t in scored]
    return {
        "dev_tasks": dev,
        "held_out_tasks": held,
        "per_length": {
            "all" if factor is None else str(factor): {
                "dev": summarise(scored, dev, factor), "held_out": summarise(scored, held, factor)
            }
            for factor in (*bc.LENGTH_FACTORS, None)
        },
    }  # fmt: skip


def _is_grid(name: str) -> bool:
    return name.startswith("family ")


def main(argv: Sequence[str] | None = None) -> int:
    quality = qc.load_cache()
    budget = qc.load_cache(bc.BUDGET_CACHE_PATH)
    document = report(quality, budget)
    from benchmarks import report as results_report

    path = RESULTS_DIR / "budget-rescored.json"
    path.write_text(json.dumps(document, indent=1))
    results_report.write_results(RESULTS_DIR)
    readme = RESULTS_DIR.parent.parent / "README.md"
    readme.write_text(readme_with_table(readme.read_text(encoding="utf-8"), document), "utf-8")
    for scoring, part in document["scorings"].items():
        chosen = part.get("selection", {})
        print(
            f"{scoring}: {len(part['dev_tasks'])} dev and {len(part['held_out_tasks'])} held-out "
            f"tasks complete; selection {chosen.get('pick')} (cv x{chosen.get('cv_geo_mean')})"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
