"""The RESULTS.md section and headline of :mod:`benchmarks.heap`."""

from __future__ import annotations

from typing import Any

from benchmarks.common import describe_thresholds, environment_section, fmt, markdown_table

__all__ = ["heap_headline", "heap_section"]


def heap_headline(results: dict[str, Any]) -> list[str]:
    """One bullet: the kept heap's CPU time over glibc's default on the headless sweep."""
    low, high = results["cpu_ratio_interval"]
    default, kept = results["modes"]["default"], results["modes"]["kept"]
    return [
        f"glibc keeping freed memory (`benchmarks/heap.py`): a headless {results['model']} "
        f"sweep x{fmt(results['cpu_ratio'])} CPU time (95% {fmt(low)}-{fmt(high)}), "
        f"{fmt(default['minor_faults'])} -> {fmt(kept['minor_faults'])} page faults per sweep."
    ]


def heap_section(results: dict[str, Any]) -> str:
    """A row per heap setting: CPU and system seconds and page faults per sweep."""
    low, high = results["cpu_ratio_interval"]
    rows = [
        [mode, fmt(f["cpu_s"]), fmt(f["system_s"]), fmt(f["minor_faults"])]
        for mode, f in results["modes"].items()
    ]
    timed_sweeps = len(results["raw"][0]["default"])  # per process, as recorded
    return "\n\n".join(
        [
            "## glibc's heap: freed memory kept or handed back",
            "Command: `.venv-bench/bin/python -m benchmarks.heap`. A headless `find_lr` sweep "
            f"with every suggestion, {results['model']} ({results['description']}), "
            f"{results['num_steps']} steps, in the main thread with one torch thread; each "
            f"setting in its own process, {results['rounds']} rounds alternating the order, "
            f"{timed_sweeps} timed sweeps per process after a warm-up. `kept`: "
            f"{describe_thresholds(results['thresholds'])}, set with `mallopt` (the same as "
            "`MALLOC_MMAP_THRESHOLD_` and `MALLOC_TRIM_THRESHOLD_` in the environment); the "
            "widget-cost benchmark runs with it.",
            markdown_table(
                ["heap", "CPU s per sweep (median)", "system s", "minor page faults"], rows
            ),
            f"Kept / default CPU time, per round: x{fmt(results['cpu_ratio'])} "
            f"(95% {fmt(low)}-{fmt(high)}).",
            environment_section(results["environment"]),
        ]
    )
