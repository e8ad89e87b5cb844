"""The RESULTS.md section of the realistic-budget benchmark, and the README table, rendered from
``results/budget-rescored.json`` (written by :mod:`benchmarks.budget_rescore`).

The training lengths are read from the document (its ``per_length`` keys), not from
:data:`benchmarks.budget_cache.LENGTH_FACTORS`, so rendering needs neither torch nor the tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.split import DEV_TASKS, HELD_OUT_TASKS

__all__ = [
    "ANCHOR_ROWS",
    "ORACLE",
    "OUR_ROWS",
    "budget_headline",
    "budget_section",
    "readme_table",
    "readme_with_table",
]

OUR_ROWS = (
    "for_length, length given",
    "for_length, length not given",
    "minimum_third",
    "minimum",
    "steep",
    "valley",
    "minimum + confirm (30-step probes)",
    "minimum + confirm (100-step probes)",
    "minimum + confirm (300-step probes)",
    "minimum + confirm (600-step probes)",
)
ANCHOR_ROWS = (
    "fastai/minimum",
    "fastai/valley",
    "torch-lr-finder/steep",
    "lightning/steep",
    "successive halving (160 steps)",
    "Prodigy d (190 steps)",
)
ANCHOR_DEFAULTS = ("fastai/valley", "torch-lr-finder/steep", "lightning/steep")
"""Each anchor's own default suggestion."""
ORACLE = "oracle (best LR on seeds 3-5)"
"""The oracle's method name (scored by :mod:`benchmarks.budget_rescore`)."""
ALL_LENGTHS = "all"
"""The ``per_length`` key of the scores over every length together."""


def _cell(summary: dict[str, Any], method: str) -> str:
    entry = summary.get(method)
    if entry is None:
        return "-"
    return f"x{entry['geo_mean']:.2f} ({entry['within_10pct']}/{entry['count']})"


def _lengths(part: dict[str, Any]) -> list[str]:
    """The length factors ``part`` was scored at, shortest first, as its ``per_length`` keys
    (``"1"``, ``"6"``, ``"30"``)."""
    return [key for key in part["per_length"] if key != ALL_LENGTHS]


def _length_name(key: str) -> str:
    return "all lengths" if key == ALL_LENGTHS else f"{key}x"


def _table(part: dict[str, Any], split: str, rows: Sequence[str]) -> list[str]:
    keys = [*_lengths(part), ALL_LENGTHS]
    header = ["method", *[_length_name(key) for key in keys]]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for method in rows:
        cells = [_cell(part["per_length"][key][split], method) for key in keys]
        if any(cell != "-" for cell in cells):
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return lines


def _rows(part: dict[str, Any]) -> list[str]:
    chosen = [part["selection"]["pick"]] if "selection" in part else []
    return [*OUR_ROWS, *chosen, *ANCHOR_ROWS, ORACLE]


def targets(part: dict[str, Any]) -> list[str]:
    """Issue 25's targets, each met or not, on the held-out tasks."""
    held = part["per_length"]
    ours, unknown = "for_length, length given", "for_length, length not given"
    lines = []
    for key in _lengths(part):
        summary = held[key]["held_out"]
        if ours not in summary:
            continue
        entry = summary[ours]
        ahead = all(
            entry["geo_mean"] < summary[anchor]["geo_mean"]
            for anchor in ANCHOR_ROWS
            if anchor in summary
        )
        share = entry["within_10pct"] / entry["count"]
        lines.append(
            f"- {key}x: geo-mean x{entry['geo_mean']:.3f} (target <= x1.10: "
            f"{_yes(entry['geo_mean'] <= 1.10)}), {entry['within_10pct']}/{entry['count']} "
            f"within 10% (target >= 80%: {_yes(share >= 0.8)}), ahead of every anchor: "
            f"{_yes(ahead)}"
        )
    oracle = [
        f"{key}x {_cell(held[key]['held_out'], ORACLE)}"
        for key in _lengths(part)
        if ORACLE in held[key]["held_out"]
    ]
    if oracle:
        lines.append(
            "- for scale, the oracle (the best LR chosen on three other seeds) against the same "
            f"targets: {', '.join(oracle)}"
        )
    overall = held[ALL_LENGTHS]["held_out"]
    if unknown in overall:
        ahead = all(
            overall[unknown]["geo_mean"] < overall[anchor]["geo_mean"]
            for anchor in ANCHOR_DEFAULTS
            if anchor in overall
        )
        lines.append(
            f"- length not given, over all lengths: x{overall[unknown]['geo_mean']:.3f}, ahead "
            f"of every anchor's default: {_yes(ahead)}"
        )
    return lines


def variants_section(variants: list[dict[str, Any]] | None) -> list[str]:
    """Other shapes of the rule (:mod:`benchmarks.budget_variants`), each chosen by the same
    leave-one-task-out, its cross-validated score beside its held-out one."""
    if not variants:
        return []
    keys = [key for key in variants[0]["held_out"] if key != ALL_LENGTHS]
    header = ["shape", "constants tried", "cross-validated (dev)", "chosen on dev",
              *[f"held out {key}x" for key in keys], "held out, all lengths"]  # fmt: skip
    lines = [
        "### Other shapes of the rule, chosen the same way",
        "",
        "Each shape is a family of rules over a grid of constants (`benchmarks/budget_variants."
        "py`, run by `budget_rescore`): leave-one-task-out over the development tasks gives its "
        "cross-validated score, the fair comparison, since more constants always fit the "
        "development tasks better; the constants best on all of them are then scored on the "
        "held-out tasks.",
        "",
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
    ]
    for entry in variants:
        held = [entry["held_out"][key] for key in [*keys, ALL_LENGTHS]]
        cells = [f"x{cell['geo_mean']:.2f} ({cell['within_10pct']}/{cell['count']})"
                 for cell in held]  # fmt: skip
        lines.append(
            f"| {entry['variant']} | {entry['grid_size']} | x{entry['cv_geo_mean']:.3f} | "
            f"{entry['pick']} | " + " | ".join(cells) + " |"
        )
    library, others = variants[0], variants[1:]
    better = [e["variant"] for e in others if e["cv_geo_mean"] < library["cv_geo_mean"]]
    lines += [
        "",
        (f"Cross-validated ahead of the library's shape (x{library['cv_geo_mean']:.3f}): "
         f"{', '.join(better)}." if better else
         f"None cross-validates ahead of the library's shape (x{library['cv_geo_mean']:.3f}): "
         "what they gain on the development tasks is fitted, not found again on a task left "
         "out."),
        "",
    ]  # fmt: skip
    return lines


def _yes(flag: bool) -> str:
    return "met" if flag else "**missed**"


def _task_table(part: dict[str, Any]) -> list[str]:
    header = ["task", "split", *[f"best LR {k}x (noise, oracle)" for k in _lengths(part)]]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for split, names in (("dev", part["dev_tasks"]), ("held out", part["held_out_tasks"])):
        for task in names:
            cells = []
            for key in _lengths(part):
                entry = part["tasks"][task][key]
                oracle = entry["oracle_regret"]
                oracle_text = "-" if oracle is None else f"+{100 * oracle:.0f}%"
                cells.append(
                    f"{entry['best_lr']:.1e} at {entry['length']:,} "
                    f"({100 * entry['noise']:.0f}%, {oracle_text})"
                )
            lines.append(f"| {task} | {split} | " + " | ".join(cells) + " |")
    return lines


def budget_headline(document: dict[str, Any]) -> list[str]:
    """The RESULTS.md headline bullet: ours and each anchor's default, held out, per length."""
    part = document["scorings"][document["headline_scoring"]]
    if not part["held_out_tasks"]:
        return []
    cells = []
    for method in ("for_length, length given", "for_length, length not given", *ANCHOR_ROWS):
        per = [
            _cell(part["per_length"][key]["held_out"], method).split(" ")[0]
            for key in _lengths(part)
        ]
        cells.append(f"`{method}` {' / '.join(per)}")
    lengths = " / ".join(f"{factor}x" for factor in _lengths(part))
    return [
        f"Suggestions for the training you will run, held-out geo-mean of loss / best at "
        f"{lengths} the task's budget ({len(part['held_out_tasks'])} tasks complete): "
        + "; ".join(cells)
    ]


def budget_section(document: dict[str, Any]) -> str:
    """The RESULTS.md section."""
    headline = document["headline_scoring"]
    part = document["scorings"][headline]
    complete = len(part["dev_tasks"]) + len(part["held_out_tasks"])
    lines = [
        "## Suggestions for the training you will run (realistic lengths)",
        "",
        "`python -m benchmarks.budget_cache` (hours on two cores; cached in "
        "`results/budget-cache.json`, resumable, `--max-minutes` to stop in time) then `python "
        "-m benchmarks.budget_rescore` (seconds). Every task is trained at constant LR for 1x, "
        f"6x and 30x its base budget ({', '.join(_length_examples(part))}; 30x is 1,800-4,800 "
        "steps), 3 seeds. The 1x grid is the 25 LRs of the quality cache; the longer runs cover "
        "a window of it around the 1x optimum (1.75 decades below, 0.75 above), widened while "
        "an optimum sits on its edge; one run to 30x gives every shorter length (its first steps "
        "are theirs). A run is scored at its best checkpoint up to the length (14 checkpoints, "
        "1.5-2x apart: a user who keeps the best checkpoint); the end-of-run scoring follows "
        "below. The best LR is the lowest mean score; a pick is scored by interpolating its "
        "seed's scores in log LR. Cells: geometric mean over tasks of (loss at the pick) / (best "
        "loss), and the tasks within 10% of the best.",
        "",
        f"Tasks complete: {complete} of {_task_count()} (development: "
        f"{', '.join(part['dev_tasks']) or 'none'}; held out: "
        f"{', '.join(part['held_out_tasks']) or 'none'}). The split is that of the quality "
        "benchmark, fine-tuning and mid-training tasks added to it before their ground truth "
        "existed.",
        "",
    ]
    if "selection" in part:
        selection, assumed = part["selection"], part["assumed_selection"]
        lines += [
            f"Leave-one-task-out over the development tasks, every length of the left-out task "
            f"held out together, chose `{selection['pick']}` for a given length N (cross-"
            f"validated x{selection['cv_geo_mean']:.3f}) and `{assumed['pick']}` when the "
            f"length is not known (x{assumed['cv_geo_mean']:.3f}). `for_length` is the library's "
            "rule with its constants; the oracle is the best window LR chosen on seeds 3-5 and "
            "scored on seeds 0-2 (what choosing on other seeds achieves).",
            "",
        ]
    lines += ["### Held-out tasks", "", *_table(part, "held_out", _rows(part)), ""]
    lines += ["Targets (issue 25), held out:", "", *targets(part), ""]
    lines += variants_section(part.get("variants"))
    lines += ["### Development tasks", "", *_table(part, "dev", _rows(part)), ""]
    lines += ["### Per task", "", "Noise: seed-to-seed spread at the best LR (standard "
              "deviation over mean); oracle: its regret.", "", *_task_table(part), ""]  # fmt: skip
    lines += _one_cycle_section(part.get("one_cycle"))
    for scoring, other in document["scorings"].items():
        if scoring == headline:
            continue
        lines += [
            f"### Scored at the end of the run ({scoring})",
            "",
            "The same runs scored by their last validation loss: on the small data sets the "
            "30x runs last hundreds of epochs and this rewards whatever LR is too small to "
            "overfit by then.",
            "",
            *_table(other, "held_out", _rows(other)),
            "",
        ]
    return "\n".join(lines)


ONE_CYCLE_RULE = "minimum_half"
"""The library's rule for the peak of a one-cycle schedule (``SCHEDULE_RULES["one-cycle"]``;
a test holds the two equal)."""


def _one_cycle_section(one_cycle: dict[str, Any] | None) -> list[str]:
    """The one-cycle tasks at every length: the LR as the peak of a schedule as long as the run."""
    if not one_cycle or not (one_cycle["dev_tasks"] or one_cycle["held_out_tasks"]):
        return []
    rows = [ONE_CYCLE_RULE, "for_length, length given", "minimum_third", "minimum", "steep",
            "valley", *ANCHOR_ROWS]  # fmt: skip
    lines = [
        "### One-cycle: the LR as the peak of a schedule as long as the run",
        "",
        "The tasks trained with a one-cycle schedule too, at the same three lengths (one run "
        "per LR, seed and length, over the window of the 1x optimum), each pick taken as the "
        f"schedule's peak. `{ONE_CYCLE_RULE}` is the library's rule for it "
        '(`result.suggestion_for("one-cycle")`). Development: '
        f"{', '.join(one_cycle['dev_tasks']) or 'none'}; held out: "
        f"{', '.join(one_cycle['held_out_tasks']) or 'none'}.",
        "",
    ]
    for split, name in (("held_out", "Held out"), ("dev", "Development")):
        lines += [f"{name}:", "", *_table(one_cycle, split, rows), ""]
    return lines


def _length_examples(part: dict[str, Any]) -> list[str]:
    tasks = [*part["dev_tasks"], *part["held_out_tasks"]][:2]
    lengths = _lengths(part)
    return [
        f"{task}: " + ", ".join(f"{part['tasks'][task][key]['length']:,}" for key in lengths)
        for task in tasks
    ]


def _task_count() -> int:
    """How many tasks there are: the split covers every one of :data:`benchmarks.tasks.TASKS`
    (checked by the benchmark tests)."""
    return len(DEV_TASKS) + len(HELD_OUT_TASKS)


README_START, README_END = "<!-- budget-table:start -->", "<!-- budget-table:end -->"


def readme_table(document: dict[str, Any]) -> str:
    """The README's comparison table: held-out, per length, our rule and each anchor, after a
    line saying how many tasks it covers."""
    part = document["scorings"][document["headline_scoring"]]
    rows = ["for_length, length given", "for_length, length not given", "minimum_third",
            "minimum + confirm (30-step probes)", *ANCHOR_ROWS, ORACLE]  # fmt: skip
    held, dev = part["held_out_tasks"], part["dev_tasks"]
    if len(held) + len(dev) == _task_count():
        status = (
            f"Held-out tasks: {len(held)} ({', '.join(held)}); development tasks: {len(dev)}; "
            f"all {_task_count()} measured at every length."
        )
    else:
        status = (
            f"Held-out tasks measured at every length so far: {len(held)} "
            f"({', '.join(held) or 'none yet'}); development tasks: {len(dev)} of the "
            f"{_task_count()} tasks in all (the computation runs over several sessions)."
        )
    lines = [status, ""]
    if "selection" in part:
        chosen, assumed = part["selection"], part["assumed_selection"]
        lines += [
            f"Leave-one-task-out over those {len(dev)} development tasks chose the divisor "
            f"`{chosen['pick'].removeprefix('family ')}` (N the training steps; cross-validated "
            f"x{chosen['cv_geo_mean']:.3f}) and, for a length not given, "
            f"`{assumed['pick'].rsplit(' ', 1)[-1]}` steps (x{assumed['cv_geo_mean']:.3f}).",
            "",
        ]
    overall = part["per_length"][ALL_LENGTHS]["held_out"]
    ours = overall.get("for_length, length given")
    if ours is not None:
        ahead = [
            f"{anchor} (x{overall[anchor]['geo_mean']:.2f}"
            + (
                f", on its {overall[anchor]['count'] // len(_lengths(part))} tasks)"
                if overall[anchor]["count"] != ours["count"]
                else ")"
            )
            for anchor in ANCHOR_ROWS
            if anchor in overall and overall[anchor]["geo_mean"] < ours["geo_mean"]
        ]
        verdict = (
            f"Over all lengths, held out, `for_length` scores x{ours['geo_mean']:.2f}; "
            + (f"ahead of it: {', '.join(ahead)}." if ahead else "no anchor is ahead of it.")
            + " Issue 25's targets (x1.10, 80% within 10%, ahead of every anchor) are checked "
            "per length in RESULTS.md, beside the oracle's own score against them and the other "
            "shapes of the rule tried."
        )
        lines += [verdict, ""]
    lines += confirm_verdict(part)
    return "\n".join([*lines, *_table(part, "held_out", rows)])


CONFIRM_ROW = "minimum + confirm (30-step probes)"
"""What ``find_lr(..., confirm=True)`` does, as the benchmark scores it."""


def confirm_verdict(part: dict[str, Any]) -> list[str]:
    """Whether the confirmation probes beat the rule alone at every length, held out, in words
    (issue 25: if not, the default alone is the recommended path)."""
    ours = "for_length, length given"
    cells, better = [], []
    for key in _lengths(part):
        summary = part["per_length"][key]["held_out"]
        if CONFIRM_ROW not in summary or ours not in summary:
            return []
        probe, alone = summary[CONFIRM_ROW]["geo_mean"], summary[ours]["geo_mean"]
        cells.append(f"{key}x x{probe:.2f} against x{alone:.2f}")
        better.append(probe < alone)
    verdict = (
        "better at every length, so confirm is worth its probes"
        if all(better)
        else "not better at every length, so the default alone (no probes) is the recommended path"
    )
    return [
        f"`find_lr(..., confirm=True)` (three 30-step probes) against the rule alone, held out: "
        f"{', '.join(cells)}: {verdict}.",
        "",
    ]


def readme_with_table(readme: str, document: dict[str, Any]) -> str:
    """``readme`` with the text between the table markers replaced by :func:`readme_table`."""
    start, end = readme.index(README_START), readme.index(README_END)
    block = f"{README_START}\n{readme_table(document)}\n"
    return readme[:start] + block + readme[end:]
