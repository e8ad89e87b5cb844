"""Writes ``benchmarks/RESULTS.md`` from the JSON files the benchmarks save.

Each benchmark saves its own results (``results/speed.json``, ``results/quality.json``) and then
calls :func:`write_results`, which renders whichever files exist, so either benchmark can be
rerun alone. ``--quick`` runs read and write ``*-quick`` files and ``RESULTS-quick.md`` instead,
leaving the committed results alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["markdown_table", "render", "write_results"]

TARGETS = {
    "tiny-mlp": 1.10,  # engine within 10% of the bare loop where per-step overhead shows
    "mid-cnn": 1.03,  # and within 3% where it should vanish
}
WIDGET_TARGETS = {"tiny-mlp": 1.05, "mid-cnn": 1.02, "tiny-mlp-10k": 1.05}  # live / headless
STEP_OVERHEAD_TARGET_US = {"tiny-mlp": 20.0}  # lr_widget's CPU time per step beyond the bare loop


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; ``-`` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table; cells are formatted with :func:`fmt`.

    >>> print(markdown_table(["a", "b"], [[1, 0.5]]))
    | a | b |
    | --- | --- |
    | 1 | 0.5 |
    """
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _ratio_cell(ratio: float, bounds: Sequence[float]) -> str:
    return f"{fmt(ratio)} ({fmt(bounds[0])}-{fmt(bounds[1])})"


def environment_section(environment: dict[str, Any]) -> str:
    """Machine and versions as a two-column table."""
    anchors = environment.get("anchors", {})
    rows = [
        ["date", environment.get("date")],
        ["CPU", f"{environment.get('cpu')} ({environment.get('cores')} cores)"],
        ["memory (GiB)", environment.get("memory_gib")],
        ["load average at start / end", _loads(environment)],
        ["OS", environment.get("os")],
        ["Python", environment.get("python")],
        ["torch (threads per process)", _pair(environment, "torch", "torch_threads")],
        ["numpy", environment.get("numpy")],
        ["lr_widget (commit)", _pair(environment, "lr_widget", "lr_widget_commit")],
        *[[name, version or "not installed"] for name, version in anchors.items()],
    ]  # fmt: skip
    for extra in ("scikit-learn", "ipywidgets", "bqplot"):
        if environment.get(extra):
            rows.append([extra, environment[extra]])
    if environment.get("heap"):
        from benchmarks.heap import describe_thresholds

        kept = f"freed memory kept: {describe_thresholds(environment['heap'])}"
        rows.append(["glibc heap (benchmarks/heap.py)", kept])
    return markdown_table(["", ""], rows)


def _pair(environment: dict[str, Any], first: str, second: str) -> str:
    return f"{environment.get(first)} ({environment.get(second)})"


def _loads(environment: dict[str, Any]) -> str:
    start = environment.get("load_average") or []
    end = environment.get("load_average_end") or []
    return f"{' '.join(map(str, start[:1]))} / {' '.join(map(str, end[:1]))} (1-minute)"


# -- speed --------------------------------------------------------------------------------------
def speed_section(results: dict[str, Any]) -> str:
    """Tables of the speed benchmark: one per model, then targets, widget and snapshot."""
    sweep = results["sweep"]
    parts = [
        "## Speed and memory",
        f"Command: `.venv-bench/bin/python -m benchmarks.speed{_quick_flag(results)}`. "
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


def _quick_flag(results: dict[str, Any]) -> str:
    return " --quick" if results.get("quick") else ""


def _speed_model_table(model: dict[str, Any]) -> str:
    header = [
        "contender", "steps", "median time (s)", "time / bare", "best time / best bare",
        "CPU time / bare", "overhead per step (µs, wall / CPU)", "peak RSS (MiB)",
        "first sweep RSS increase (MiB)", "vs bare (MiB)",
    ]  # fmt: skip
    rows = [
        [
            name, row["steps"], row["median_wall_s"],
            _ratio_cell(row["wall_ratio"], row["wall_ratio_range"]), row.get("best_time_ratio"),
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
                f"{name} {_ratio_cell(v['ratio'], v['range'])}" for name, v in versus.items()
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
            _yes(engine["wall_ratio"] <= limit),
        ])  # fmt: skip
    cpu_versus = model.get("versus_anchors_cpu") or {}
    for anchor, versus in (model.get("versus_anchors") or {}).items():
        cpu = cpu_versus.get(anchor, {}).get("ratio")
        rows.append([
            f"{name}: lr_widget faster than {anchor}", f"x{fmt(versus['ratio'])}",
            f"x{fmt(cpu)}", _yes(versus["ratio"] < 1),
        ])  # fmt: skip
    step_limit = STEP_OVERHEAD_TARGET_US.get(name)
    if step_limit is not None and engine is not None:
        overhead = engine.get("cpu_overhead_us_per_step", math.nan)
        rows.append([
            f"{name}: lr_widget's CPU time per step beyond the bare loop under "
            f"{fmt(step_limit)} µs ({fmt(overhead)} µs)",
            f"x{fmt(engine['wall_ratio'])}", f"x{fmt(engine['cpu_ratio'])}",
            _yes(overhead < step_limit),
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
        f"x{fmt(widget['ratio'])}", f"x{fmt(cpu)}", _yes(widget["ratio"] <= limit),
    ]]  # fmt: skip


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


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


# -- instructions per step ----------------------------------------------------------------------
def instructions_headline(results: dict[str, Any]) -> list[str]:
    """One bullet: lr_widget's instructions per step and per sweep beyond the bare loop."""
    return [
        f"tiny-mlp, counted by callgrind (not moved by the machine's load): lr_widget "
        f"{results['extra_per_step']:+,.0f} instructions per step beyond the bare loop "
        f"(x{results['step_ratio']:.4f}), about {fmt(results['extra_us_per_step'])} µs CPU per "
        f"step at this machine's rate; {results['extra_per_sweep']:+,.0f} instructions per "
        f"sweep ({fmt(results['native_extra_ms_per_sweep'])} ms CPU, timed natively)."
    ]


def instructions_section(results: dict[str, Any]) -> str:
    """The callgrind counts of :mod:`benchmarks.step_instructions`, with the 20 µs target."""
    per_step, per_sweep = results["per_step"], results["per_sweep"]
    target = STEP_OVERHEAD_TARGET_US["tiny-mlp"]
    rows = [[name, f"{per_step[name]:,.0f}", f"{per_sweep[name]:,.0f}"] for name in per_step]
    rows.append(
        ["lr_widget - bare", f"{results['extra_per_step']:+,.0f}",
         f"{results['extra_per_sweep']:+,.0f}"]
    )  # fmt: skip
    met = results["extra_us_per_step"] < target
    return "\n\n".join(
        [
            "## Instructions per step",
            "Command: `.venv-bench/bin/python -m benchmarks.step_instructions` (needs valgrind). "
            f"{results['model']}: instructions retired, counted by callgrind in one process per "
            f"count after a {results['warmup_steps']}-step warm-up sweep; per step from sweeps of "
            f"{results['steps'][0]} and {results['steps'][1]} steps, per sweep what is left of "
            "the short sweep (set-up, snapshot, restore, result). Unlike a timing, the count does "
            "not depend on other processes. Microseconds convert it at the bare loop's own rate: "
            f"{fmt(results['bare_cpu_us_per_step'])} µs CPU per step, timed natively. The "
            "per-sweep cost is timed natively as well (warm 2-step sweeps against 2-step bare "
            f"loops, interleaved, median CPU time): {fmt(results['native_extra_ms_per_sweep'])} "
            f"ms, where its instructions at the bare rate would read "
            f"{fmt(results['extra_ms_per_sweep_at_bare_rate'])} ms: the conversion is only as "
            "good as the assumption that both run at the same instructions per cycle.",
            markdown_table(["contender", "instructions per step", "per sweep (warm)"], rows),
            markdown_table(
                ["target", "extra per step", "met"],
                [
                    [
                        f"tiny-mlp: lr_widget's CPU time per step beyond the bare loop under "
                        f"{fmt(target)} µs (by instructions)",
                        f"{fmt(results['extra_us_per_step'])} µs "
                        f"(x{results['step_ratio']:.4f} of the bare step)",
                        _yes(met),
                    ]
                ],
            ),
            environment_section(results["environment"]),
        ]
    )


# -- the file -----------------------------------------------------------------------------------
def render(
    speed: dict[str, Any] | None,
    quality: dict[str, Any] | None,
    rescored: dict[str, Any] | None = None,
    instructions: dict[str, Any] | None = None,
    widget_cost: dict[str, Any] | None = None,
    heap: dict[str, Any] | None = None,
    budget: dict[str, Any] | None = None,
) -> str:
    """The whole RESULTS.md text; the base-budget offline scoring (``rescored``), when present,
    replaces the older quality run."""
    from benchmarks.budget_report import budget_headline, budget_section
    from benchmarks.heap import heap_headline, heap_section
    from benchmarks.quality_report import quality_headline, quality_section
    from benchmarks.rescore import rescored_headline, rescored_section
    from benchmarks.widget_cost_report import widget_cost_headline, widget_cost_section

    if rescored is not None:
        quality = None

    parts = [
        "# Benchmark results",
        "Generated by `benchmarks/report.py` from `benchmarks/results/*.json`; do not edit by "
        "hand. Rerun a benchmark to refresh its section (see `benchmarks/README.md`).",
    ]
    bullets = (speed_headline(speed) if speed else []) + (
        quality_headline(quality) if quality else []
    )
    if widget_cost is not None:
        bullets += widget_cost_headline(widget_cost)
    if heap is not None:
        bullets += heap_headline(heap)
    if instructions is not None:
        bullets += instructions_headline(instructions)
    if budget is not None:
        bullets += budget_headline(budget)
    if rescored is not None:
        bullets += rescored_headline(rescored)
    if bullets:
        parts += ["## Headline", "\n".join(f"- {bullet}" for bullet in bullets)]
    if speed is not None:
        parts.append(speed_section(speed))
    if widget_cost is not None:
        parts.append(widget_cost_section(widget_cost))
    if heap is not None:
        parts.append(heap_section(heap))
    if instructions is not None:
        parts.append(instructions_section(instructions))
    if quality is not None:
        parts.append(quality_section(quality))
    if budget is not None:
        parts.append(budget_section(budget))
    if rescored is not None:
        parts.append(rescored_section(rescored))
    return "\n\n".join(parts) + "\n"


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def write_results(results_dir: Path, quick: bool = False) -> Path:
    """Render the saved results into ``RESULTS.md`` (``RESULTS-quick.md`` for quick runs)."""
    suffix = "-quick" if quick else ""
    speed = _load(results_dir / f"speed{suffix}.json")
    quality = _load(results_dir / f"quality{suffix}.json")
    target = results_dir.parent / f"RESULTS{suffix}.md"
    rescored = None if quick else _load(results_dir / "quality-rescored.json")
    instructions = None if quick else _load(results_dir / "step_instructions.json")
    widget_cost = _load(results_dir / f"widget_cost{suffix}.json")
    heap = None if quick else _load(results_dir / "heap.json")
    budget = None if quick else _load(results_dir / "budget-rescored.json")
    text = render(speed, quality, rescored, instructions, widget_cost, heap, budget)
    target.write_text(text, encoding="utf-8")
    return target
