"""The RESULTS.md section and headline of :mod:`benchmarks.step_instructions`."""

from __future__ import annotations

from typing import Any

from benchmarks.common import environment_section, fmt, markdown_table, yes_or_no
from benchmarks.speed_report import STEP_OVERHEAD_TARGET_US

__all__ = ["instructions_headline", "instructions_section"]


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
                        yes_or_no(met),
                    ]
                ],
            ),
            environment_section(results["environment"]),
        ]
    )
