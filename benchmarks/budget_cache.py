"""Ground truth at realistic training lengths, cached and resumable: the best LR of each quality
task when the training the user runs is 1, 6 and 30 times the task's base budget.

The base budget (``Task.train_steps``, 60-160 steps) is about as long as a range test, and the
best constant LR moves with the length of the run: a suggestion is judged here by the training a
user will actually run. The plan, per task:

* **length 1x**: the full grid of :mod:`benchmarks.quality_cache` (25 LRs from 1e-5 to 10, seeds
  0-2), read from its cache;
* **constant LR, 6x and 30x**: one run per LR and seed to the longest length, with the validation
  loss recorded at every length (:data:`LENGTH_FACTORS`): at constant LR a long run's first steps
  *are* the shorter runs, so one run gives all three lengths (and reproduces the 1x grid). Only a
  window of the grid is run (:data:`WINDOW`, grid points below and above the 1x optimum: the best
  LR falls with length more often than it rises), widened by :data:`EXTENSION` points whenever the
  best mean at some length sits on the window's edge; an LR that diverged within the 1x budget
  diverges in the longer run too (same steps) and is not rerun;
* **one-cycle tasks**: the same window, one run per length (a one-cycle schedule depends on its
  length);
* **the oracle's seeds** (:data:`ORACLE_SEEDS`): the final window again with seeds 3-5, last,
  so that "within 10%" can be read against the best LR chosen on other seeds;
* **Prodigy** (an anchor): its step-size estimate ``d`` after as many steps as the sweep and the
  confirmation probes take, on the Adam-family tasks.

Jobs are planned again as results arrive (the window depends on them), cheapest tasks first, and
the cache is written every 30 seconds, so the run can stop at any time and resume later:
``python -m benchmarks.budget_cache [--workers N] [--tasks ...] [--max-minutes M]``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import itertools
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import quality_cache as qc
from benchmarks.common import RESULTS_DIR
from benchmarks.tasks import TASKS, TrainOutcome, get_task, train_at_lr

__all__ = [
    "BUDGET_CACHE_PATH",
    "EXTENSION",
    "LENGTH_FACTORS",
    "ORACLE_SEEDS",
    "PRODIGY_STEPS",
    "WINDOW",
    "lengths_of",
    "main",
    "plan_jobs",
    "run_reply",
    "run_score",
    "window_indices",
]

BUDGET_CACHE_PATH = RESULTS_DIR / "budget-cache.json"
LENGTH_FACTORS = (1, 6, 30)
"""Training lengths, as multiples of a task's base budget: 30x spans the issue's 30x and reaches
1,800-4,800 steps (20-140 epochs) on these tasks."""
WINDOW = (7, 3)
"""Grid points (four per decade) run below and above the 1x optimum: 1.75 decades below, 0.75
above."""
EXTENSION = 2
"""Grid points added beyond an edge of the window on which some length's optimum sits."""
ORACLE_SEEDS = (3, 4, 5)
CHECKPOINT_FACTORS = (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 30)
"""Where a constant-LR run records its validation loss, as multiples of the task's base budget."""
SCORINGS = ("best-checkpoint", "final")
"""How a run of a given length is scored: the lowest validation loss at any checkpoint up to its
end (the headline: users keep their best checkpoint, as Lightning's ModelCheckpoint and Hugging
Face's load_best_model_at_end do), or the loss at its end (which, on the small data sets trained
for hundreds of epochs at 30x, mostly rewards the LR too small to overfit by then)."""
RUN = "run"
"""The job kind of a training run (``"long"`` jobs, recorded before the checkpoints, are not
read)."""
PRODIGY_STEPS = 190
"""Steps of the Prodigy anchor: the sweep's 100 plus the confirmation probes' 90."""
PRODIGY_OPTIMIZERS = ("Adam", "AdamW (wd 0.01)")
TRAIN_LOSS_BLOCKS = 60
"""Blocks of 10 training steps whose mean loss each long run records (probes up to 600 steps)."""


def checkpoints_of(task_name: str) -> list[int]:
    """Steps at which a constant-LR run's validation loss is recorded: every length, and enough
    points between them (a factor of 1.5 or 2 apart) for a kept best checkpoint.

    >>> checkpoints_of("digits-mlp")[:5], checkpoints_of("digits-mlp")[-1]
    ([40, 80, 120, 160, 240], 4800)
    """
    base = get_task(task_name).train_steps
    return sorted({max(1, round(base * factor)) for factor in CHECKPOINT_FACTORS})


def lengths_of(task_name: str) -> tuple[int, ...]:
    """The training lengths (steps) of a task.

    >>> lengths_of("digits-mlp")
    (160, 960, 4800)
    """
    base = get_task(task_name).train_steps
    return tuple(base * factor for factor in LENGTH_FACTORS)


def job_key(job: Sequence[Any]) -> str:
    return qc.job_key(job)


def window_indices(best: int, size: int, low: int = WINDOW[0], high: int = WINDOW[1]) -> range:
    """Grid indices of the window around index ``best`` of a grid of ``size`` LRs.

    >>> list(window_indices(10, 25))
    [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]
    >>> list(window_indices(2, 25, 7, 3))
    [0, 1, 2, 3, 4, 5]
    """
    return range(max(best - low, 0), min(best + high, size - 1) + 1)


# -- planning (pure: reads the two caches, returns the jobs still needed) -----------------------
def _short_truth(quality: dict[str, Any], task: str, schedule: str) -> dict[int, list[Any]] | None:
    """The 1x grid runs of seeds 0-2, per seed, or None while any is missing."""
    jobs, grid = quality["jobs"], qc.GRID
    runs: dict[int, list[Any]] = {}
    for seed in qc.SEEDS:
        keys = [f"train|{schedule}|{task}|{qc.lr_key(lr)}|{seed}" for lr in grid]
        if any(key not in jobs or "error" in jobs[key] for key in keys):
            return None
        runs[seed] = [jobs[key] for key in keys]
    return runs


def long_key(schedule: str, task: str, lr: float, seed: int, length: int) -> str:
    """The budget cache's key of one run (``length`` is where a constant-LR run ends)."""
    return job_key((RUN, schedule, task, lr, seed, length))


def run_score(reply: dict[str, Any], length: int, scoring: str) -> float:
    """A run's score had it been trained ``length`` steps: its validation loss then
    (``"final"``) or the lowest at any checkpoint up to then (``"best-checkpoint"``: a user who
    keeps the best checkpoint); the starting loss once it has diverged, or if it never beat it.

    >>> reply = {"val_losses": [[10, 0.5], [20, 0.4], [30, 0.6]], "initial": 1.0,
    ...          "diverged_at": None}
    >>> run_score(reply, 30, "final"), run_score(reply, 30, "best-checkpoint")
    (0.6, 0.4)
    """
    if scoring not in SCORINGS:
        raise ValueError(f"scoring must be one of {SCORINGS}, got {scoring!r}")
    initial, diverged_at = float(reply["initial"]), reply["diverged_at"]

    def scored(step: int, value: float) -> float:
        if (diverged_at is not None and diverged_at <= step) or not math.isfinite(value):
            return initial
        return min(value, initial)

    points = {int(step): float(value) for step, value in reply["val_losses"]}
    if scoring == "final":
        if length not in points:  # diverged before it
            return initial
        return scored(length, points[length])
    return min(
        [initial] + [scored(step, value) for step, value in points.items() if step <= length]
    )


def _long_score(
    budget: dict[str, Any], schedule: str, task: str, lr: float, seed: int, length: int,
    scoring: str = "final",
) -> float | None:  # fmt: skip
    """The score of the run of ``seed`` at ``lr`` trained for ``length`` steps, if known."""
    lengths = lengths_of(task)
    end = lengths[-1] if schedule == "constant" else length
    reply = budget["jobs"].get(long_key(schedule, task, lr, seed, end))
    if reply is None or "error" in reply:
        return None
    return run_score(reply, length, scoring)


def diverged_short(short: dict[int, list[Any]], index: int, seed: int) -> bool:
    """Whether the 1x run at grid ``index`` of ``seed`` diverged (then so do longer ones)."""
    return bool(short[seed][index]["diverged"])


def _window(
    budget: dict[str, Any], short: dict[int, list[Any]], task: str, schedule: str
) -> tuple[range, bool]:
    """The window as far as results so far widen it, and whether it is settled (every run of
    seeds 0-2 in it known and no optimum on an edge it could still move past)."""
    grid = qc.GRID
    means = np.mean([[run["score"] for run in short[seed]] for seed in qc.SEEDS], axis=0)
    window = window_indices(int(np.argmin(means)), len(grid))
    low, high = window.start, window.stop - 1
    while True:
        complete, moved = True, False
        for length, scoring in itertools.product(lengths_of(task)[1:], SCORINGS):
            table = []
            for index in range(low, high + 1):
                scores = [
                    _score(budget, short, task, schedule, index, seed, length, scoring)
                    for seed in qc.SEEDS
                ]
                if any(score is None for score in scores):
                    complete = False
                    break
                table.append(float(np.mean([s for s in scores if s is not None])))
            if not complete:
                break
            best = low + int(np.argmin(table))
            if best == low and low > 0:
                low, moved = max(low - EXTENSION, 0), True
            if best == high and high < len(grid) - 1:
                high, moved = min(high + EXTENSION, len(grid) - 1), True
        if not moved:
            return range(low, high + 1), complete


def _score(
    budget: dict[str, Any], short: dict[int, list[Any]], task: str, schedule: str, index: int,
    seed: int, length: int, scoring: str = "final",
) -> float | None:  # fmt: skip
    if schedule == "constant" and seed in short and diverged_short(short, index, seed):
        return float(short[seed][index]["initial"])
    return _long_score(budget, schedule, task, qc.GRID[index], seed, length, scoring)


def plan_jobs(
    quality: dict[str, Any], budget: dict[str, Any], tasks: Iterable[str]
) -> list[tuple[Any, ...]]:
    """Every job the results so far call for and the cache lacks, in priority order: Prodigy
    (cheap), constant LR on the development tasks (the rule is chosen there), then on the
    held-out ones (seeds 0-2), then one-cycle, then the oracle's seeds; cheap tasks first."""
    from benchmarks.split import DEV_TASKS

    stages: list[list[tuple[float, tuple[Any, ...]]]] = [[], [], [], [], []]
    for task in tasks:
        about = get_task(task)
        cost = qc._cost(task)
        for schedule in ("constant", "one-cycle"):
            if schedule == "one-cycle" and not about.one_cycle:
                continue
            stage = 3 if schedule == "one-cycle" else 1 if task in DEV_TASKS else 2
            short = _short_truth(quality, task, schedule)
            if short is None:
                continue
            window, settled = _window(budget, short, task, schedule)
            seeds = qc.SEEDS + (ORACLE_SEEDS if settled and schedule == "constant" else ())
            for seed in seeds:
                for index in window:
                    if (
                        schedule == "constant"
                        and seed in short
                        and diverged_short(short, index, seed)
                    ):
                        continue
                    ends = lengths_of(task)[-1:] if schedule == "constant" else lengths_of(task)
                    for end in ends:
                        job: tuple[Any, ...] = (RUN, schedule, task, qc.GRID[index], seed, end)
                        if job_key(job) not in budget["jobs"]:
                            target = 4 if seed in ORACLE_SEEDS else stage
                            stages[target].append((cost * end, job))
        if about.optimizer_name in PRODIGY_OPTIMIZERS:
            for seed in qc.SEEDS:
                job = ("prodigy", task, seed)
                if job_key(job) not in budget["jobs"]:
                    stages[0].append((cost, job))
    return [job for stage in stages for _, job in sorted(stage, key=lambda item: item[0])]


# -- jobs (in worker processes) -----------------------------------------------------------------
def run_job(job: tuple[Any, ...]) -> dict[str, Any]:
    """Run one job; errors are returned, not raised (they are kept in the cache to be seen)."""
    started = time.process_time()
    try:
        reply = _long_run(job) if job[0] == RUN else _prodigy(job[1], job[2])
    except Exception as error:
        reply = {"error": f"{type(error).__name__}: {error}"}
    return reply | {"cpu_s": round(time.process_time() - started, 3)}


def _long_run(job: tuple[Any, ...]) -> dict[str, Any]:
    _, schedule, name, lr, seed, end = job
    task = get_task(name)
    marks = checkpoints_of(name) if schedule == "constant" else [end]
    outcome = train_at_lr(
        task, qc._task_data(name), lr, seed, schedule, end, marks, TRAIN_LOSS_BLOCKS
    )
    return run_reply(outcome)


def run_reply(outcome: TrainOutcome) -> dict[str, Any]:
    """A run as the cache keeps it (values rounded to 7 digits); :func:`run_score` reads it."""
    return {
        "val_losses": [[n, qc._round(loss)] for n, loss in outcome.checkpoint_val_losses],
        "initial": qc._round(outcome.initial_val_loss),
        "diverged_at": outcome.diverged_at,
        "block_train_losses": [qc._round(loss) for loss in outcome.block_train_losses],
    }


def _prodigy(name: str, seed: int) -> dict[str, Any]:
    """Prodigy's LR estimate (``d * lr``, lr 1.0) after :data:`PRODIGY_STEPS` from the task's
    starting point, its weight decay matching the task's optimizer."""
    from prodigyopt import Prodigy

    from benchmarks.tasks import _cycle

    task, data = get_task(name), qc._task_data(name)
    model, _ = task.starting_point(data, seed, 1e-3)
    decay = 0.01 if task.optimizer_name.startswith("AdamW") else 0.0
    optimizer = Prodigy(model.parameters(), lr=1.0, weight_decay=decay)
    batches = _cycle(task.train_loader(data, seed))
    trace = []
    model.train()
    for step in range(1, PRODIGY_STEPS + 1):
        inputs, targets = next(batches)
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss_fn(model(inputs), targets)
        if not math.isfinite(float(loss)):
            break
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        if step % 10 == 0:
            group = optimizer.param_groups[0]
            trace.append(float(group["d"]) * float(group["lr"]))
    group = optimizer.param_groups[0]
    return {"lr": float(group["d"]) * float(group["lr"]), "trace": trace}


# -- the runner (parent process) ----------------------------------------------------------------
def fill(tasks: Sequence[str], workers: int, deadline: float, path: Path) -> dict[str, Any]:
    """Run planned jobs until none is left or ``deadline`` (``time.monotonic``) passes; the jobs
    in flight then finish and are saved."""
    quality = qc.load_cache()
    budget = qc.load_cache(path)
    budget["format"] = "lr_widget.budget-cache"
    budget["length_factors"] = list(LENGTH_FACTORS)
    budget["lengths"] = {name: list(lengths_of(name)) for name in tasks}
    context = multiprocessing.get_context("spawn")
    last_save, finished = time.monotonic(), 0
    with concurrent.futures.ProcessPoolExecutor(workers, context, qc._init_worker) as pool:
        running: dict[concurrent.futures.Future[dict[str, Any]], tuple[Any, ...]] = {}
        while True:
            if time.monotonic() < deadline:
                flying = {job_key(job) for job in running.values()}
                for job in plan_jobs(quality, budget, tasks):
                    if len(running) >= workers + 1:
                        break
                    if job_key(job) not in flying:
                        running[pool.submit(run_job, job)] = job
            if not running:
                break
            done, _ = concurrent.futures.wait(running, return_when="FIRST_COMPLETED")
            for future in done:
                budget["jobs"][job_key(running.pop(future))] = future.result()
                finished += 1
            if time.monotonic() - last_save > 30:
                qc.save_cache(budget, path)
                last_save = time.monotonic()
                left = len(plan_jobs(quality, budget, tasks))
                print(f"  {finished} jobs done, {left} planned now", flush=True)
    qc.save_cache(budget, path)
    return budget


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tasks", nargs="+", choices=[task.name for task in TASKS])
    parser.add_argument("--max-minutes", type=float, default=math.inf)
    args = parser.parse_args(argv)
    started = time.monotonic()
    budget = fill(
        args.tasks or [task.name for task in TASKS], args.workers,
        started + args.max_minutes * 60, BUDGET_CACHE_PATH,
    )  # fmt: skip
    cpu = sum(reply.get("cpu_s", 0.0) for reply in budget["jobs"].values())
    print(f"stopped after {time.monotonic() - started:.0f} s ({cpu:.0f} CPU-s in all jobs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
