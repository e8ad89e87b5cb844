"""The RESULTS.md section and headline of :mod:`benchmarks.speed`, and the targets they judge."""

from __future__ import annotations

import math
from typing import Any

from benchmarks.common import (
    environment_section,
    fmt,
    markdown_table,
    quick_flag,
    ratio_cell,
    yes_or_no,
)

__all__ = [
    "STEP_OVERHEAD_TARGET_US",
    "TARGETS",
    "WIDGET_TARGETS",
    "speed_headline",
    "speed_section",
]

TARGETS = {
    "tiny-mlp": 1.10,  # engine within 10% of the bare loop where per-step overhead shows
    "mid-cnn": 1.03,  # and within 3% where it should vanish
}
WIDGET_TARGETS = {"tiny-mlp": 1.05, "mid-cnn": 1.02, "tiny-mlp-10k": 1.05}  # live / headless
STEP_OVERHEAD_TARGET_US = {"tiny-mlp": 20.0}  # lr_widget's CPU time per step beyond the bare loop


def speed_section(results: dict[str, Any]) -> str:
    """Tables of the speed benchmark: one per model, then targets, widget and snapshot."""
    sweep = results["sweep"]
    parts = [
        "## Speed and memory",
        f"Command: `.venv-bench/bin/python -m benchmarks.speed{quick_flag(results)}`. "
        f"Every contender sweeps {fmt(sweep['start_lr'])} to {fmt(sweep['end_lr'])} with "
        f"{sweep['optimizer']} and no early stop, in its own process, one torch thread each. "
        "After one untimed sweep each, every repetition runs every contender once (rotating "
        "order). *Time / bare* is the median over repetitions of the contender's time divided by "
        "the bare loop's time in the same repetition (first and third quartiles in brackets); "
        "*best time / best bare* divides the fastest repetitions, the least disturbed by other "
        "processes. `bare-again` is the bare loop once more: its ratio to `bare` is the timing "
        "noise itself. Times cover the range-test call alone (fastai's `Learner` and "
        "Lightning's `Trainer` are built beforehand, as users build them anyway). "
        "`lr_widget-suggest` is `find_lr` followed by every rule's suggestion, what a script "
        "does to get the answer the widget shows: the live widget (`lr_widget-live`, "
        "`LRWidget(...).run()` then `wait()`, every update serialised as in a notebook) is "
        "compared with it, so the widget's ratio is the cost of the live view itself.",
        "*First sweep RSS increase*: how far the first sweep in a fresh worker raised its "
        "resident memory above the level just before it (peak from the kernel's `VmHWM`; later "
        "sweeps reuse freed memory and show little). *vs bare* subtracts the bare loop's "
        "increase, which holds the activations, gradients and optimizer state every contender "
        "needs.",
        environment_section(results["environment"]),
    ]
    for model in results["models"]:
        parts.append(_speed_model_table(model))
    parts.append(_speed_targets(results["models"]))
    parts.extend(_snapshot_notes(results["models"]))
    return "\n\n".join(parts)


def _speed_model_table(model: dict[str, Any]) -> str:
    header = [
        "contender", "steps", "median time (s)", "time / bare", "best time / best bare",
        "CPU time / bare", "overhead per step (µs, wall / CPU)", "peak RSS (MiB)",
        "first sweep RSS increase (MiB)", "vs bare (MiB)",
    ]  # fmt: skip
    rows = [
        [
            name, row["steps"], row["median_wall_s"],
            ratio_cell(row["wall_ratio"], row["wall_ratio_range"]), row.get("best_time_ratio"),
            row["cpu_ratio"],
            f"{fmt(row['overhead_us_per_step'])} / {fmt(row.get('cpu_overhead_us_per_step'))}",
            row["peak_rss_mib"], row["sweep_increment_mib"], row["extra_over_bare_mib"],
        ]
        for name, row in model["contenders"].items()
    ]  # fmt: skip
    title = (
        f"### {model['model']}: {model['description']}, {model['num_steps']} steps, "
        f"{model['repetitions']} repetitions"
    )
    lines = [title, markdown_table(header, rows)]
    for key, what in (("versus_anchors", "time"), ("versus_anchors_cpu", "CPU time")):
        versus = model.get(key) or {}
        if versus:
            cells = ", ".join(
                f"{name} {ratio_cell(v['ratio'], v['range'])}" for name, v in versus.items()
            )
            lines.append(f"lr_widget {what} / anchor {what} (median, quartiles): {cells}.")
    return "\n\n".join(lines)


def _speed_targets(models: list[dict[str, Any]]) -> str:
    rows = []
    for model in models:
        rows.extend(_model_targets(model))
    header = ["target", "time ratio (median)", "CPU time ratio (median)", "met (by time)"]
    intro = (
        "### Targets\n\nJudged on the median wall-time ratio, as specified; the CPU-time ratio "
        "is shown beside it because other processes shared this machine's two cores (see the "
        "load average above), which inflates wall times at random."
    )
    return intro + "\n\n" + markdown_table(header, rows)


def _model_targets(model: dict[str, Any]) -> list[list[Any]]:
    name, contenders = model["model"], model["contenders"]
    rows: list[list[Any]] = []
    control = contenders.get("bare-again")
    if control is not None:
        low, high = control["wall_ratio_range"]
        rows.append([
            f"{name}: timing noise, A/A (bare-again / bare; quartiles {fmt(low)}-{fmt(high)})",
            f"x{fmt(control['wall_ratio'])}", f"x{fmt(control['cpu_ratio'])}", "(control)",
        ])  # fmt: skip
    limit = TARGETS.get(name)
    engine = contenders.get("lr_widget")
    if limit is not None and engine is not None:
        rows.append([
            f"{name}: lr_widget within {round((limit - 1) * 100)}% of the bare loop",
            f"x{fmt(engine['wall_ratio'])}", f"x{fmt(engine['cpu_ratio'])}",
            yes_or_no(engine["wall_ratio"] <= limit),
        ])  # fmt: skip
    cpu_versus = model.get("versus_anchors_cpu") or {}
    for anchor, versus in (model.get("versus_anchors") or {}).items():
        cpu = cpu_versus.get(anchor, {}).get("ratio")
        rows.append([
            f"{name}: lr_widget faster than {anchor}", f"x{fmt(versus['ratio'])}",
            f"x{fmt(cpu)}", yes_or_no(versus["ratio"] < 1),
        ])  # fmt: skip
    step_limit = STEP_OVERHEAD_TARGET_US.get(name)
    if step_limit is not None and engine is not None:
        overhead = engine.get("cpu_overhead_us_per_step", math.nan)
        rows.append([
            f"{name}: lr_widget's CPU time per step beyond the bare loop under "
            f"{fmt(step_limit)} µs ({fmt(overhead)} µs)",
            f"x{fmt(engine['wall_ratio'])}", f"x{fmt(engine['cpu_ratio'])}",
            yes_or_no(overhead < step_limit),
        ])  # fmt: skip
    rows.extend(_widget_targets(model))
    return rows


def _widget_targets(model: dict[str, Any]) -> list[list[Any]]:
    widget, limit = model.get("widget"), WIDGET_TARGETS.get(model["model"])
    if not widget or limit is None:
        return []
    cpu = (model.get("widget_cpu") or {}).get("ratio")
    baseline = model.get("widget_baseline", "lr_widget")
    live = model["contenders"].get("lr_widget-live", {})
    payload = ""
    if "max_message_bytes" in live:
        payload = (
            f"; {fmt(live['messages_per_sweep'])} messages per sweep, the largest "
            f"{fmt(live['max_message_bytes'] / 1024)} KiB"
        )
    return [[
        f"{model['model']}: live widget within {round((limit - 1) * 100)}% of headless "
        f"({baseline}{payload})",
        f"x{fmt(widget['ratio'])}", f"x{fmt(cpu)}", yes_or_no(widget["ratio"] <= limit),
    ]]  # fmt: skip


def _snapshot_notes(models: list[dict[str, Any]]) -> list[str]:
    rows = []
    for model in models:
        for case, numbers in (model.get("snapshot") or {}).items():
            one_copy = (
                numbers["parameter_bytes"] + numbers["buffer_bytes"]
                + numbers["optimizer_state_bytes"]
            )  # fmt: skip
            rows.append([
                model["model"], case.replace("_", " "), numbers["snapshot_bytes"],
                numbers["parameter_bytes"], numbers["buffer_bytes"], numbers["gradient_bytes"],
                numbers["optimizer_state_bytes"], numbers["snapshot_bytes"] / one_copy,
            ])  # fmt: skip
    if not rows:
        return []
    header = [
        "model", "gradients before the sweep", "snapshot (bytes)", "parameters", "buffers",
        "gradients", "optimizer state", "snapshot / (parameters + buffers + optimizer state)",
    ]  # fmt: skip
    intro = (
        "### Restore snapshot\n\n`result.metadata['snapshot_bytes']` after one real AdamW step "
        "(so the optimizer has state). The snapshot lives in host memory only (`to_host` copies "
        "every tensor to the CPU; on CUDA into pinned memory), so it costs no accelerator "
        "memory; this machine has no GPU to show it on."
    )
    return [intro + "\n\n" + markdown_table(header, rows)]


def speed_headline(results: dict[str, Any]) -> list[str]:
    """One bullet per model: lr_widget and each anchor against the bare loop, and memory."""
    bullets = []
    for model in results["models"]:
        rows = model["contenders"]
        engine = rows.get("lr_widget")
        if engine is None:
            continue
        anchors = ", ".join(
            f"{name} x{fmt(rows[name]['wall_ratio'])}"
            for name in ("fastai", "lightning", "torch-lr-finder")
            if name in rows
        )
        memory = ", ".join(
            f"{name} {fmt(row['extra_over_bare_mib'])}"
            for name, row in rows.items()
            if name not in ("bare", "bare-again")
        )
        widget = model.get("widget")
        live = ""
        if widget:
            live = (
                f"; live widget / {model.get('widget_baseline', 'lr_widget')} "
                f"x{fmt(widget['ratio'])}"
            )
        control = rows.get("bare-again")
        noise = f"; timing noise (A/A) x{fmt(control['wall_ratio'])}" if control else ""
        bullets.append(
            f"{model['model']} ({model['num_steps']} steps), time / bare loop: lr_widget "
            f"x{fmt(engine['wall_ratio'])} (CPU x{fmt(engine['cpu_ratio'])}, "
            f"+{fmt(engine.get('cpu_overhead_us_per_step'))} µs CPU per step), {anchors}{live}"
            f"{noise}. Memory above the bare loop (MiB): {memory}."
        )
    return bullets
