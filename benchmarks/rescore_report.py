"""The RESULTS.md section and headline of :mod:`benchmarks.rescore`: suggestion quality at the
base budget, scored offline from the quality cache (``results/quality-rescored.json``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["markdown", "rescored_headline", "rescored_section"]

ANCHOR_DEFAULTS = ("fastai/valley", "fastai/minimum", "torch-lr-finder/steep", "lightning/steep")
"""The anchors' suggestions the headline shows beside lr_widget's defaults."""


def markdown(document: dict[str, Any], methods: Sequence[str] | None = None) -> str:
    """Per target schedule: the cross-validated pick and every method's scores, held out and
    on the development tasks (``methods`` in that order, else by held-out score)."""
    lines = []
    for schedule in ("constant", "one-cycle"):
        part = document[schedule]
        held, dev = part["held_out"], part["dev"]
        order = sorted(held, key=lambda m: held[m]["geo_mean"]) if methods is None else methods
        lines += [
            f"### Target schedule: {schedule}",
            "",
            f"Cross-validated pick over dev tasks: `{part['selection']['pick']}` "
            f"(leave-one-task-out geo-mean x{part['selection']['cv_geo_mean']:.3f})",
            "",
            "| method | held-out geo-mean | held-out within 10% | dev geo-mean | dev within 10% |",
            "| --- | --- | --- | --- | --- |",
        ]
        for method in order:
            if method in held:
                h, d = held[method], dev[method]
                lines.append(
                    f"| {method} | x{h['geo_mean']:.3f} | {h['within_10pct']}/{h['tasks']} "
                    f"| x{d['geo_mean']:.3f} | {d['within_10pct']}/{d['tasks']} |"
                )
        lines.append("")
    return "\n".join(lines)


def _default_and_anchors(document: dict[str, Any]) -> list[tuple[str, str]]:
    from lr_widget.results.confirmation import CONFIRM_RULE
    from lr_widget.suggestions.registry import DEFAULT_RULE, SCHEDULE_RULES

    rows = [("constant", DEFAULT_RULE), ("one-cycle", SCHEDULE_RULES["one-cycle"])]
    rows.append(("constant", f"{CONFIRM_RULE} + confirm"))  # find_lr(confirm=True)
    return rows + [("constant", anchor) for anchor in ANCHOR_DEFAULTS]


def rescored_headline(document: dict[str, Any]) -> list[str]:
    """RESULTS.md headline bullets: the defaults and the anchors, held out."""
    cells = []
    for schedule, method in _default_and_anchors(document):
        held = document[schedule]["held_out"][method]
        cells.append(
            f"`{method}` ({schedule}) x{held['geo_mean']:.2f}, "
            f"{held['within_10pct']}/{held['tasks']} within 10%"
        )
    return ["Suggestion quality, held-out tasks (geo-mean of loss / best): " + "; ".join(cells)]


def rescored_section(document: dict[str, Any]) -> str:
    """The RESULTS.md section: method, split, and every method's scores."""
    constant = document["constant"]
    confirm_pick = constant["confirm_selection"]["pick"]
    confirm_chosen = constant["confirm_selection"]["chosen_per_fold"]
    confirm_folds = sum(chosen == confirm_pick for chosen in confirm_chosen.values())
    count = len(document["dev_tasks"]) + len(document["held_out_tasks"])
    intro = [
        f"## Suggestion quality at the base budget ({count} tasks, scored offline from the cache)",
        "",
        "`python -m benchmarks.quality_cache` (once, ~30 min on two cores: ground truth and raw "
        "sweeps) then `python -m benchmarks.rescore` (seconds). Ground truth: each task trained "
        "for its base budget (60-160 steps, about as long as the sweep: the realistic lengths "
        "are in the section above) at 25 constant LRs (1e-5 to 10, four per decade) with 3 "
        "seeds, best = lowest mean validation loss; for 8 tasks also with the LR as the peak "
        "of a one-cycle schedule. `for_length` is read with no length given. A "
        "pick is scored by interpolating its seed's grid scores in log LR. Score: geometric "
        "mean over tasks of (mean loss at the picks) / (best mean loss); within 10% = at most "
        "1.10. lr_widget's rules read the lag-free curve unless marked `EMA`.",
        "",
        f"Development tasks ({len(document['dev_tasks'])}, rules chosen here): "
        + ", ".join(document["dev_tasks"]),
        "",
        f"Held-out tasks ({len(document['held_out_tasks'])}, the headline; split fixed and "
        "committed before any rule was scored): " + ", ".join(document["held_out_tasks"]),
        "",
        f"Leave-one-task-out over the development tasks chose `{constant['selection']['pick']}` "
        f"for constant LR and `{document['one-cycle']['selection']['pick']}` for one-cycle.",
        "",
        "`find_lr(confirm=True)` trains three 30-step probes (90 steps) at 1/3, 1 and 3 times "
        "a rule's LR and takes the lowest; `rule + confirm` scores it around `rule`, `... if "
        "decisive` keeps the rule's LR unless the winner's margin is over twice the noise. Its "
        f"centre, `{confirm_pick.removesuffix(' + confirm')}`, is the best centre on the "
        f"development tasks, chosen in {confirm_folds} of {len(confirm_chosen)} "
        "leave-one-task-out folds (cross-validated geo-mean "
        f"x{constant['confirm_selection']['cv_geo_mean']:.3f}).",
        "",
    ]
    return "\n".join(intro) + markdown(document)
