"""The suggestion-quality section of ``RESULTS.md``, rendered from ``quality.json``."""

from __future__ import annotations

from typing import Any

from benchmarks.report import environment_section, fmt, markdown_table

__all__ = ["quality_headline", "quality_section"]


def _percent(regret: float | None) -> str:
    return "-" if regret is None else f"{regret * 100:+.1f}%"


def _lr(value: float | None) -> str:
    return "none" if value is None else f"{value:.1e}"


def tasks_table(results: dict[str, Any]) -> str:
    """One row per task: what it is and its ground truth."""
    rows = []
    for name, task in results["tasks"].items():
        group = "dev" if name in results["groups"].get("dev", ()) else "held-out"
        rows.append([
            name, group, task["description"], _lr(task["best_lr"]), task["best_score"],
            task["initial_score"],
        ])  # fmt: skip
    header = ["task", "split", "what", "best LR (grid)", "best val loss", "initial val loss"]
    return markdown_table(header, rows)


def _summary_cells(results: dict[str, Any], method: str) -> list[Any]:
    cells: list[Any] = []
    for group in ("all", "dev", "held_out"):
        numbers = results["summary"].get(group, {}).get(method)
        if numbers is None:
            cells += ["-", "-"]
        else:
            cells += [
                f"x{fmt(numbers['geo_mean_factor'])}",
                f"{numbers['within_10pct']}/{numbers['tasks']}",
            ]
    return cells


def _worst(results: dict[str, Any], method: str) -> str:
    numbers = results["summary"].get("all", {}).get(method)
    return "-" if numbers is None else _percent(numbers["worst_regret"])


def headline_table(results: dict[str, Any]) -> str:
    """Each tool's default suggestion, and the recommended lr_widget rule."""
    defaults = results["default_methods"]
    rows = [
        [f"{method} (default)", *_summary_cells(results, method), _worst(results, method)]
        for method in defaults.values()
    ]
    pick = (results["selection"].get("lr_widget") or {}).get("dev_pick")
    if pick and pick != defaults.get("lr_widget"):
        label = f"{pick} (best on dev tasks)"
        rows.insert(1, [label, *_summary_cells(results, pick), _worst(results, pick)])
    header = [
        "method", "all: geo-mean (1+regret)", "all: within 10%", "dev: geo-mean", "dev: within 10%",
        "held-out: geo-mean", "held-out: within 10%", "worst task",
    ]  # fmt: skip
    return markdown_table(header, rows)


def regret_matrix(results: dict[str, Any]) -> str:
    """Every method's regret (and suggested LR, geometric mean over seeds) on every task."""
    tasks = list(results["tasks"])
    methods = list(next(iter(results["tasks"].values()))["methods"])
    rows = []
    for method in methods:
        cells = []
        for task in tasks:
            numbers = results["tasks"][task]["methods"][method]
            cell = f"{_percent(numbers['regret'])} @ {_lr(numbers['lr'])}"
            if numbers["no_answer"]:
                cell += f" ({numbers['no_answer']} no answer)"
            cells.append(cell)
        summary = results["summary"]["all"].get(method, {})
        rows.append([
            method, *cells, f"x{fmt(summary.get('geo_mean_factor'))}",
            f"{summary.get('within_10pct', '-')}/{len(tasks)}", _worst(results, method),
        ])  # fmt: skip
    header = ["method", *tasks, "geo-mean (1+regret)", "within 10%", "worst task"]
    return markdown_table(header, rows)


def _place(chosen: dict[str, Any]) -> str:
    place = chosen.get("held_out_place_of_pick")
    return "-" if place is None else f"{place} of {len(chosen['held_out_ranking'])}"


def selection_table(results: dict[str, Any]) -> str:
    """For each lr_widget configuration: the best rules on the dev tasks, and the pick's
    standing on the held-out tasks."""
    rows = []
    for config, chosen in results["selection"].items():
        top = ", ".join(name.rsplit("/", 1)[1] for name in chosen["dev_ranking"][:3])
        held = ", ".join(name.rsplit("/", 1)[1] for name in chosen["held_out_ranking"][:3])
        pick = chosen["dev_pick"]
        rows.append([
            config, top, pick.rsplit("/", 1)[1] if pick else "-",
            *(_summary_cells(results, pick)[4:] if pick else ["-", "-"]),
            _place(chosen), held or "-",
        ])  # fmt: skip
    header = [
        "configuration", "best 3 on dev", "dev pick", "pick on held-out: geo-mean",
        "within 10%", "pick's held-out place", "best 3 on held-out",
    ]  # fmt: skip
    return markdown_table(header, rows)


def quality_headline(results: dict[str, Any]) -> list[str]:
    """Bullets: each tool's default suggestion over all tasks, and lr_widget's best on dev."""
    overall = results["summary"].get("all", {})
    tasks = len(results["tasks"])

    def describe(method: str) -> str:
        numbers = overall.get(method)
        if numbers is None:
            return f"{method} -"
        return (
            f"{method} x{fmt(numbers['geo_mean_factor'])} "
            f"({numbers['within_10pct']}/{tasks} within 10%)"
        )

    tools = ("lr_widget", "fastai", "lightning", "torch-lr-finder")  # not lr_widget's variants
    defaults = "; ".join(
        describe(method) for config, method in results["default_methods"].items() if config in tools
    )
    bullets = [
        f"Suggestion quality over {tasks} tasks, geometric mean of (1 + regret), each tool's "
        f"default: {defaults}."
    ]
    pick = (results["selection"].get("lr_widget") or {}).get("dev_pick")
    held_out = results["summary"].get("held_out", {}).get(pick or "")
    if pick and held_out:
        bullets.append(
            f"Best lr_widget rule on the dev tasks: {describe(pick)}; on the held-out tasks "
            f"x{fmt(held_out['geo_mean_factor'])} ({held_out['within_10pct']}/"
            f"{held_out['tasks']} within 10%)."
        )
    return bullets


def quality_section(results: dict[str, Any]) -> str:
    """The whole quality section."""
    timings = results["timings"]
    command = "`.venv-bench/bin/python -m benchmarks.quality" + (
        " --quick`" if results["quick"] else "`"
    )
    grid = results["grid"]
    parts = [
        "## Suggestion quality",
        f"Command: {command} ({timings['jobs']} jobs, {timings['wall_s'] / 60:.1f} min wall, "
        f"{timings['jobs_cpu_s'] / 60:.1f} min CPU). Ground truth: each task trained at "
        f"{len(grid)} constant LRs from {_lr(grid[0])} to {_lr(grid[-1])} (log grid) with seeds "
        f"{results['seeds']}; the best LR has the lowest mean validation loss, a diverged run "
        "scoring its initial loss. Each finder runs once per seed on a fresh model of that seed "
        "(each anchor with its own defaults, from its own library); the model is then trained "
        "at the suggested LR with the same seed. *Regret* = mean validation loss at the "
        "suggestions / best mean on the grid - 1 (negative: better than every grid point); a "
        "rule with no answer scores the initial loss. *geo-mean (1+regret)* is the geometric "
        "mean over tasks; *within 10%* counts tasks with regret <= 10%. Rules are chosen on the "
        "dev tasks and checked on the held-out ones.",
        environment_section(results["environment"]),
        "### Tasks",
        tasks_table(results),
        "### Headline: each tool's default suggestion",
        headline_table(results),
        "### Choosing lr_widget's rule on the dev tasks, checked on the held-out tasks",
        selection_table(results),
        "### Every method on every task (regret @ suggested LR, geometric mean over seeds)",
        regret_matrix(results),
    ]
    if results.get("errors"):
        parts += ["### Errors", "\n".join(f"- {error}" for error in results["errors"])]
    return "\n\n".join(parts)
