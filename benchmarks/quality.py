"""Suggestion quality: how good is the LR each rule and each anchor suggests, on real tasks?

For every task of :mod:`benchmarks.tasks`:

1. *Ground truth.* Train at every LR of a log grid (1e-5 to 1, three per decade) with five
   seeds; the best LR has the lowest mean validation loss (a diverged run scores its initial
   loss).
2. *Sweeps.* Run each finder configuration once per seed on a fresh model of that seed:
   lr_widget (every rule, plus rule combinations, the validation-loss variant, three batches
   per step, and three repeats) and each anchor from its real library with its own defaults.
3. *Scoring.* Train at every suggested LR directly, with the seed of the sweep that suggested
   it; regret = mean validation loss / best mean - 1.

The default rule is chosen on the development tasks only and checked on the held-out ones, so
the choice is not tuned to the whole suite. Run it with the benchmark environment::

    .venv-bench/bin/python -m benchmarks.quality            # about 15 minutes on 2 cores
    .venv-bench/bin/python -m benchmarks.quality --quick    # a smoke run, a couple of minutes

It writes ``benchmarks/results/quality.json`` and rewrites ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import json
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import report, scoring
from benchmarks.split import DEV_TASKS, HELD_OUT_TASKS
from benchmarks.tasks import TASKS, get_task, log_grid, train_at_lr
from lr_widget.suggestions.registry import RULES

__all__ = ["CONFIGS", "DEV_TASKS", "HELD_OUT_TASKS", "FinderConfig", "main", "method_names"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SEEDS = (0, 1, 2, 3, 4)
GRID = log_grid(1e-5, 1.0, 3)
LR_WIDGET_RULES = tuple(RULES)


@dataclass(frozen=True)
class FinderConfig:
    """One way of running a range test: a tool, its options, and which rules it offers.

    ``default_rule`` is the rule the tool applies when the user asks for "the" suggestion.
    ``repeats > 1`` runs lr_widget's ``find_lr_repeated`` once, whose robust picks (geometric
    medians over the runs) are trained with every seed.
    """

    name: str
    tool: str
    rules: tuple[str, ...]
    default_rule: str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    validation: bool = False
    repeats: int = 1

    @property
    def is_lr_widget(self) -> bool:
        return self.tool == "lr_widget"


CONFIGS: tuple[FinderConfig, ...] = (
    FinderConfig("lr_widget", "lr_widget", LR_WIDGET_RULES),
    FinderConfig("lr_widget val-loss", "lr_widget", LR_WIDGET_RULES, validation=True),
    FinderConfig(
        "lr_widget 3 batches per step",
        "lr_widget",
        LR_WIDGET_RULES,
        options=(("batches_per_step", 3),),
    ),
    FinderConfig("lr_widget 3 repeats", "lr_widget", LR_WIDGET_RULES, repeats=3),
    FinderConfig("fastai", "fastai", ("valley", "minimum", "steep", "slide"), "valley"),
    FinderConfig("lightning", "lightning", ("steep",), "steep"),
    FinderConfig("torch-lr-finder", "torch-lr-finder", ("steep",), "steep"),
)
QUICK_CONFIGS = ("lr_widget", "fastai", "lightning", "torch-lr-finder")


def get_config(name: str) -> FinderConfig:
    """The configuration called ``name``."""
    for config in CONFIGS:
        if config.name == name:
            return config
    raise KeyError(f"no finder configuration {name!r}")


def config_rules(config: FinderConfig) -> list[str]:
    """The rules a configuration is scored on: its own, and for lr_widget each combination of
    them."""
    rules = list(config.rules)
    if config.is_lr_widget:
        rules += list(scoring.COMBINATIONS)
    return rules


def method_names(config: FinderConfig) -> list[str]:
    """The methods a configuration yields, named ``"<configuration>/<rule>"``."""
    return [f"{config.name}/{rule}" for rule in config_rules(config)]


# -- jobs (run in worker processes) -------------------------------------------------------------
def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")


@functools.cache
def _task_data(task_name: str) -> Any:
    return get_task(task_name).load_data()


def run_job(job: tuple[Any, ...]) -> dict[str, Any]:
    """Run one job in a worker: ``("train", task, lr, seed)`` or ``("sweep", config, task,
    seed)``. Errors are returned, not raised, so one failing anchor cannot stop the benchmark."""
    started = time.process_time()
    try:
        if job[0] == "train":
            _, task_name, lr, seed = job
            task = get_task(task_name)
            outcome = train_at_lr(task, _task_data(task_name), lr, seed)
            reply = dataclasses.asdict(outcome) | {"score": outcome.score}
        else:
            _, config_name, task_name, seed = job
            reply = {"suggestions": sweep_suggestions(get_config(config_name), task_name, seed)}
    except Exception as error:  # reported in the results, never silently dropped
        reply = {"error": f"{type(error).__name__}: {error}"}
    return reply | {"cpu_s": time.process_time() - started}


def sweep_suggestions(config: FinderConfig, task_name: str, seed: int) -> dict[str, float | None]:
    """Run ``config``'s range test on a fresh model of ``seed``; return its suggestions."""
    from benchmarks.anchors import Setup, SweepSpec, prepare

    task, data = get_task(task_name), _task_data(task_name)
    setup = Setup(
        task.fresh_model(data, seed), task.make_optimizer, task.train_loader(data, seed),
        task.loss_fn, task.val_loader(data) if config.validation else None,
    )  # fmt: skip
    if config.repeats > 1:
        return _repeated_suggestions(setup, config.repeats, seed)
    sweep = prepare(config.tool, setup, SweepSpec(options=dict(config.options)))()
    return {rule: sweep.suggestions.get(rule) for rule in config.rules}


def _repeated_suggestions(setup: Any, repeats: int, seed: int) -> dict[str, float | None]:
    """lr_widget's ``find_lr_repeated``: each rule's robust pick (the geometric median of the
    runs' picks)."""
    from lr_widget.engine.repeated_sweep import find_lr_repeated

    optimizer = setup.make_optimizer(setup.model.parameters(), 1e-7)
    repeated = find_lr_repeated(
        setup.model, setup.train_loader, setup.loss_fn, optimizer, repeats=repeats, seed=seed
    )
    return {rule: suggestion.lr for rule, suggestion in repeated.suggestions().items()}


# -- orchestration (parent process) -------------------------------------------------------------
@dataclass
class Plan:
    """What one run of the benchmark covers."""

    tasks: tuple[str, ...]
    configs: tuple[FinderConfig, ...]
    grid: tuple[float, ...]
    seeds: tuple[int, ...]
    workers: int
    quick: bool


def make_plan(quick: bool, workers: int, tasks: Sequence[str] | None = None) -> Plan:
    """The full plan, or the smoke-run plan for ``quick``."""
    if quick:
        return Plan(
            tuple(tasks or ("digits-mlp", "cancer-logreg")),
            tuple(get_config(name) for name in QUICK_CONFIGS),
            tuple(log_grid(1e-4, 1.0, 1)), (0,), workers, quick,
        )  # fmt: skip
    return Plan(
        tuple(tasks or [task.name for task in TASKS]), CONFIGS, tuple(GRID), SEEDS, workers,
        quick,
    )  # fmt: skip


def _sweep_seeds(config: FinderConfig, seeds: Sequence[int]) -> Sequence[int]:
    return seeds[:1] if config.repeats > 1 else seeds


def first_round_jobs(plan: Plan) -> list[tuple[Any, ...]]:
    """The grid's training runs and every sweep; slow tasks first, for load balance."""
    jobs: list[tuple[Any, ...]] = []
    for task in sorted(plan.tasks, key=_task_cost, reverse=True):
        jobs += [
            ("sweep", c.name, task, s) for c in plan.configs for s in _sweep_seeds(c, plan.seeds)
        ]
        jobs += [("train", task, lr, seed) for lr in plan.grid for seed in plan.seeds]
    return jobs


def _task_cost(task_name: str) -> int:
    task = get_task(task_name)
    heavy = {"text-transformer": 4, "text-lstm": 3, "digits-cnn-bn": 3}
    return heavy.get(task_name, 1) * task.train_steps


def run_jobs(jobs: Iterable[tuple[Any, ...]], workers: int) -> dict[tuple[Any, ...], Any]:
    """Run ``jobs`` on a pool of ``workers`` single-threaded processes; replies by job."""
    jobs = list(dict.fromkeys(jobs))
    replies: dict[tuple[Any, ...], Any] = {}
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, context, _init_worker) as pool:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
            replies[futures[future]] = future.result()
            if done % 25 == 0 or done == len(jobs):
                print(f"  {done}/{len(jobs)} jobs done", flush=True)
    return replies


def collect_picks(
    plan: Plan, replies: dict[tuple[Any, ...], Any]
) -> tuple[dict[str, dict[str, list[tuple[int, float | None]]]], list[str]]:
    """Every method's ``(seed, lr)`` picks on every task, and the errors the sweeps reported."""
    picks: dict[str, dict[str, list[tuple[int, float | None]]]] = {t: {} for t in plan.tasks}
    errors = []
    for task in plan.tasks:
        for config in plan.configs:
            for seed in _sweep_seeds(config, plan.seeds):
                reply = replies[("sweep", config.name, task, seed)]
                if "error" in reply:
                    errors.append(f"{config.name} on {task} (seed {seed}): {reply['error']}")
                suggestions = reply.get("suggestions") or {}
                if config.is_lr_widget:
                    suggestions = suggestions | scoring.combine(suggestions)
                trained_seeds = plan.seeds if config.repeats > 1 else (seed,)
                for rule in config_rules(config):
                    method = picks[task].setdefault(f"{config.name}/{rule}", [])
                    method += [(s, suggestions.get(rule)) for s in trained_seeds]
    return picks, errors


def scoring_jobs(picks: dict[str, dict[str, list[tuple[int, float | None]]]]) -> list[tuple]:
    """A training run for every suggested LR with the seed that suggested it."""
    return [
        ("train", task, lr, seed)
        for task, methods in picks.items()
        for method_picks in methods.values()
        for seed, lr in method_picks
        if lr is not None
    ]


def task_results(plan: Plan, task: str, picks: Any, replies: dict) -> dict[str, Any]:
    """Grid, best LR and every method's regret on one task."""
    definition = get_task(task)
    grid = {lr: [replies[("train", task, lr, s)]["score"] for s in plan.seeds] for lr in plan.grid}
    best_lr, best = scoring.best_on_grid(grid)
    initial = {s: replies[("train", task, plan.grid[0], s)]["initial_val_loss"] for s in plan.seeds}
    scores = {
        (job[2], job[3]): reply["score"]
        for job, reply in replies.items()
        if job[0] == "train" and job[1] == task and "score" in reply
    }
    methods = {
        method: scoring.method_regret(method_picks, scores, initial, best)
        for method, method_picks in picks[task].items()
    }
    return {
        "description": definition.description,
        "family": definition.family,
        "optimizer": definition.optimizer_name,
        "batch_size": definition.batch_size,
        "best_lr": best_lr,
        "best_score": best,
        "initial_score": sum(initial.values()) / len(initial),
        "grid": {repr(lr): scores_ for lr, scores_ in grid.items()},
        "methods": methods,
    }


def selection(plan: Plan, summaries: dict[str, Any]) -> dict[str, Any]:
    """Rank lr_widget's methods on the development tasks; report the held-out standing."""
    dev, held_out = summaries.get("dev", {}), summaries.get("held_out", {})
    out: dict[str, Any] = {}
    for config in plan.configs:
        if not config.is_lr_widget:
            continue
        candidates = method_names(config)
        dev_rank = scoring.rank_methods(dev, candidates)
        held_rank = scoring.rank_methods(held_out, candidates)
        pick = dev_rank[0] if dev_rank else None
        out[config.name] = {
            "dev_ranking": dev_rank,
            "held_out_ranking": held_rank,
            "dev_pick": pick,
            "held_out_place_of_pick": held_rank.index(pick) + 1 if pick in held_rank else None,
        }
    return out


def run_benchmark(plan: Plan) -> dict[str, Any]:
    """Run the plan end to end; return the results document written to ``quality.json``."""
    from benchmarks.environment import describe_environment, load_average

    environment = describe_environment(1)
    started = time.perf_counter()
    first = first_round_jobs(plan)
    print(f"round 1: {len(first)} jobs (grid training and sweeps) on {plan.workers} workers")
    replies = run_jobs(first, plan.workers)
    picks, errors = collect_picks(plan, replies)
    second = list(dict.fromkeys(job for job in scoring_jobs(picks) if job not in replies))
    second.sort(key=lambda job: _task_cost(job[1]), reverse=True)  # slow tasks first
    print(f"round 2: {len(second)} training runs at the suggested LRs")
    replies |= run_jobs(second, plan.workers)
    tasks = {task: task_results(plan, task, picks, replies) for task in plan.tasks}
    regrets = {}
    for task, result in tasks.items():
        for method, numbers in result["methods"].items():
            regrets.setdefault(method, {})[task] = numbers["regret"]
    groups = {
        "all": plan.tasks,
        "dev": _present(DEV_TASKS, plan),
        "held_out": _present(HELD_OUT_TASKS, plan),
    }
    summaries = {
        name: scoring.summarise_methods(regrets, group) for name, group in groups.items() if group
    }
    environment["load_average_end"] = load_average()
    return {
        "benchmark": "quality",
        "quick": plan.quick,
        "environment": environment,
        "grid": list(plan.grid),
        "seeds": list(plan.seeds),
        "configs": [dataclasses.asdict(config) for config in plan.configs],
        "default_methods": _default_methods(plan),
        "groups": {k: list(v) for k, v in groups.items()},
        "tasks": tasks,
        "summary": summaries,
        "selection": selection(plan, summaries),
        "errors": errors,
        "timings": {
            "wall_s": time.perf_counter() - started,
            "jobs_cpu_s": sum(reply.get("cpu_s", 0.0) for reply in replies.values()),
            "jobs": len(replies),
        },
    }


def _present(names: Sequence[str], plan: Plan) -> tuple[str, ...]:
    return tuple(name for name in names if name in plan.tasks)


def _default_methods(plan: Plan) -> dict[str, str]:
    """Each tool's own default method (lr_widget's is its current ``DEFAULT_RULE``)."""
    from lr_widget.suggestions.registry import DEFAULT_RULE

    defaults = {}
    for config in plan.configs:
        rule = DEFAULT_RULE if config.is_lr_widget else config.default_rule
        defaults[config.name] = f"{config.name}/{rule}"
    return defaults


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 tasks, 1 seed")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--tasks", nargs="+", choices=[task.name for task in TASKS])
    args = parser.parse_args(argv)
    plan = make_plan(args.quick, args.workers, args.tasks)
    results = run_benchmark(plan)
    name = "quality-quick.json" if args.quick else "quality.json"
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / name).write_text(json.dumps(results, indent=1))
    path = report.write_results(RESULTS_DIR, quick=args.quick)
    print(f"wrote {RESULTS_DIR / name} and {path} in {results['timings']['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
