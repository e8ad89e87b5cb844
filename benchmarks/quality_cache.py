"""Fresh compute of the quality benchmark: ground truth and raw sweeps, cached in one JSON file.

Everything that needs training is done here, once, and written to
``benchmarks/results/quality-cache.json``:

* ground truth: every task trained at every LR of :data:`GRID` with every seed of :data:`SEEDS`,
  at constant LR and, for the tasks marked ``one_cycle``, with the LR as the peak of a one-cycle
  schedule; for each run the validation score and the first training losses (the probes a
  confirmation step would run: a probe from the sweep's starting state at LR ``x`` with data
  seed ``s`` is exactly the start of the ground-truth run at ``x`` with seed ``s``);
* lr_widget's raw sweeps (``find_lr`` at its defaults): for each seed, :data:`SWEEP_REPEATS`
  sweeps of the same fresh model with different data orders (the first is "the" sweep; all of
  them are the repeats), so that every rule can be re-scored offline;
* every anchor's own suggestions from its own sweep at its defaults.

Run ``python -m benchmarks.quality_cache`` (resumable: jobs already in the cache are skipped,
and the cache is written as jobs finish); then ``python -m benchmarks.rescore`` scores every
rule from the cache in seconds.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import json
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_DIR
from benchmarks.tasks import TASKS, get_task, log_grid, train_at_lr

__all__ = ["ANCHOR_TOOLS", "CACHE_PATH", "GRID", "SEEDS", "SWEEP_REPEATS", "jobs_for", "main"]

CACHE_PATH = RESULTS_DIR / "quality-cache.json"
SEEDS = (0, 1, 2)
GRID = tuple(log_grid(1e-5, 10.0, 4))
"""Constant LRs of the ground truth: 1e-5 to 10, four per decade (25 LRs)."""
SWEEP_REPEATS = 3
ANCHOR_TOOLS = ("fastai", "lightning", "torch-lr-finder")
_DATA_ORDER_STRIDE = 1000
_SIGNIFICANT = 7


def _round(value: float) -> float:
    return float(f"{value:.{_SIGNIFICANT}g}")


def lr_key(lr: float) -> str:
    """The cache's key for an LR (``repr`` of the float, 1e-5 -> ``"1e-05"``)."""
    return repr(float(lr))


def job_key(job: Sequence[Any]) -> str:
    """``"train|constant|digits-mlp|0.001|2"`` or ``"sweep|fastai|digits-mlp|2"``."""
    parts = [lr_key(part) if isinstance(part, float) else str(part) for part in job]
    return "|".join(parts)


def jobs_for(
    tasks: Sequence[str], grid: Sequence[float], seeds: Sequence[int]
) -> list[tuple[Any, ...]]:
    """Every job of the plan, slowest tasks first (long ones start early, for load balance)."""
    jobs: list[tuple[Any, ...]] = []
    for name in sorted(tasks, key=lambda name: -_cost(name)):
        task = get_task(name)
        schedules = ("constant", "one-cycle") if task.one_cycle else ("constant",)
        for seed in seeds:
            jobs += [("sweep", tool, name, seed) for tool in ("lr_widget", *ANCHOR_TOOLS)]
        jobs += [
            ("train", kind, name, lr, seed) for kind in schedules for lr in grid for seed in seeds
        ]
    return jobs


def _cost(name: str) -> float:
    heavy = {"text": 10.0, "hf": 20.0, "digits-cnn": 6.0, "digits-resnet": 6.0}
    task = get_task(name)
    factor = next((cost for prefix, cost in heavy.items() if name.startswith(prefix)), 1.0)
    return factor * task.train_steps * task.batch_size


# -- jobs (in worker processes) -----------------------------------------------------------------
def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("transformers").setLevel(logging.ERROR)


@functools.cache
def _task_data(name: str) -> Any:
    return get_task(name).load_data()


def run_job(job: tuple[Any, ...]) -> dict[str, Any]:
    """Run one job; errors are returned, not raised, so one failing anchor cannot stop the run."""
    started = time.process_time()
    try:
        if job[0] == "train":
            _, schedule, name, lr, seed = job
            outcome = train_at_lr(get_task(name), _task_data(name), lr, seed, schedule)
            reply: dict[str, Any] = {
                "score": _round(outcome.score),
                "initial": _round(outcome.initial_val_loss),
                "diverged": outcome.diverged,
                "train_losses": [_round(loss) for loss in outcome.train_losses],
            }
        elif job[1] == "lr_widget":
            reply = {"runs": lr_widget_sweeps(job[2], job[3])}
        else:
            reply = {"suggestions": anchor_suggestions(job[1], job[2], job[3])}
    except Exception as error:  # reported in the cache, never silently dropped
        reply = {"error": f"{type(error).__name__}: {error}"}
    return reply | {"cpu_s": round(time.process_time() - started, 3)}


def lr_widget_sweeps(name: str, seed: int) -> list[dict[str, Any]]:
    """``SWEEP_REPEATS`` raw ``find_lr`` curves (defaults) of the fresh model of ``seed``; the
    first reads the data in the order of ``seed``, the others in other orders."""
    from lr_widget.find import find_lr

    task, data = get_task(name), _task_data(name)
    model, optimizer = task.starting_point(data, seed, 1e-7)
    runs = []
    for repeat in range(SWEEP_REPEATS):
        loader = task.train_loader(data, seed + _DATA_ORDER_STRIDE * repeat)
        result = find_lr(model, loader, task.loss_fn, optimizer)
        runs.append({
            "lrs": [_round(lr) for lr in result.lrs],
            "losses": [_round(loss) if loss == loss else float("nan") for loss in result.losses],
            "stop_reason": str(result.stop_reason),
        })  # fmt: skip
    return runs


def anchor_suggestions(tool: str, name: str, seed: int) -> dict[str, float | None]:
    """The suggestions of ``tool``'s own range test, at its defaults, on the model of ``seed``."""
    from benchmarks.anchors import Setup, SweepSpec, prepare

    task, data = get_task(name), _task_data(name)
    # The anchors build their own optimizers: a mid-training task's state is not theirs to read.
    model, _ = task.starting_point(data, seed, 1e-7)
    setup = Setup(model, task.make_optimizer, task.train_loader(data, seed), task.loss_fn)
    sweep = prepare(tool, setup, SweepSpec())()
    return {rule: None if lr is None else float(lr) for rule, lr in sweep.suggestions.items()}


# -- the cache (parent process) -----------------------------------------------------------------
def load_cache(path: Path = CACHE_PATH) -> dict[str, Any]:
    """The cache document, or an empty one; training jobs keyed by the exact :data:`GRID` LR."""
    if path.exists():
        cache = dict(json.loads(path.read_text()))
        cache["jobs"] = {snap_key(key): reply for key, reply in cache["jobs"].items()}
        return cache
    return {"format": "lr_widget.quality-cache", "version": 1, "jobs": {}}


def snap_key(key: str) -> str:
    """``key`` with its LR replaced by the :data:`GRID` LR it stands for.

    ``np.logspace`` gives grid values that differ in the last bit between numpy versions (the
    first runs keyed ``9.999999999999999e-06`` where today's grid has ``1e-05``): an LR within
    one part in 1e9 of a grid LR is that grid LR.

    >>> snap_key("train|constant|digits-mlp|9.999999999999999e-06|0")
    'train|constant|digits-mlp|1e-05|0'
    """
    parts = key.split("|")
    for index, part in enumerate(parts):
        try:
            value = float(part)
        except ValueError:
            continue
        if "." in part or "e" in part:
            for lr in GRID:
                if abs(value - lr) <= 1e-9 * lr:
                    parts[index] = lr_key(lr)
                    break
    return "|".join(parts)


def _describe(cache: dict[str, Any], tasks: Sequence[str]) -> None:
    cache["grid"], cache["seeds"] = list(GRID), list(SEEDS)
    cache["sweep_repeats"] = SWEEP_REPEATS
    described = cache.setdefault("tasks", {})
    for name in tasks:
        task = get_task(name)
        described[name] = {
            "description": task.description, "family": task.family,
            "optimizer": task.optimizer_name, "batch_size": task.batch_size,
            "train_steps": task.train_steps, "one_cycle": task.one_cycle, "start": task.start,
        }  # fmt: skip


def save_cache(cache: dict[str, Any], path: Path = CACHE_PATH) -> None:
    """Write the cache atomically (a crash mid-write never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(cache, separators=(",", ":"), allow_nan=True))
    partial.replace(path)


def fill_cache(tasks: Sequence[str], workers: int, path: Path = CACHE_PATH) -> dict[str, Any]:
    """Run every job of ``tasks`` not yet in the cache at ``path``; save as they finish."""
    cache = load_cache(path)
    _describe(cache, tasks)
    done = cache["jobs"]
    todo = [job for job in jobs_for(tasks, GRID, SEEDS) if job_key(job) not in done]
    print(f"{len(todo)} jobs to run ({len(done)} cached) on {workers} workers", flush=True)
    context = multiprocessing.get_context("spawn")
    last_save = time.monotonic()
    with concurrent.futures.ProcessPoolExecutor(workers, context, _init_worker) as pool:
        futures = {pool.submit(run_job, job): job for job in todo}
        for count, future in enumerate(concurrent.futures.as_completed(futures), 1):
            done[job_key(futures[future])] = future.result()
            if time.monotonic() - last_save > 30 or count == len(todo):
                save_cache(cache, path)
                last_save = time.monotonic()
                print(f"  {count}/{len(todo)} jobs done", flush=True)
    save_cache(cache, path)
    return cache


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tasks", nargs="+", choices=[task.name for task in TASKS])
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cache = fill_cache(args.tasks or [task.name for task in TASKS], args.workers)
    cpu = sum(reply.get("cpu_s", 0.0) for reply in cache["jobs"].values())
    print(f"cache complete in {time.perf_counter() - started:.0f} s ({cpu:.0f} CPU-s in all jobs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
