"""The RESULTS.md section and headline of :mod:`benchmarks.widget_cost`."""

from __future__ import annotations

from typing import Any

from benchmarks.common import environment_section, fmt, markdown_table, quick_flag

__all__ = ["widget_cost_headline", "widget_cost_section"]

_ROLES = {
    "headless": "find_lr + every suggestion, main thread (the baseline)",
    "headless-again": "the same again: the A/A control",
    "headless-in-thread": "the same in a sweep thread, nothing drawn",
    "live": "LRWidget run() + wait(), messages encoded and signed",
    "live-fresh-thread": "the same, each sweep in a newly started thread (after an idle pause)",
}


def _interval(row: dict[str, Any], clock: str) -> str:
    low, high = row[f"{clock}_ratio_interval"]
    return f"{fmt(low)}-{fmt(high)}"


def _quartiles(row: dict[str, Any], clock: str) -> str:
    low, high = row[f"{clock}_ratio_quartiles"]
    return f"{fmt(low)}-{fmt(high)}"


def _verdict(case: dict[str, Any]) -> str:
    """Whether the live widget's median CPU ratio is under the target, and whether its 95%
    interval is too (only then is the target shown to be met, not merely likely)."""
    live, target = case["contenders"]["live"], case["target"]
    if target is None:
        return "-"
    high = live["cpu_ratio_interval"][1]
    if high <= target:
        return "yes (the whole 95% interval)"
    if live["cpu_ratio"] <= target:
        return "median only: the 95% interval reaches past it"
    return "**no**"


def widget_cost_headline(results: dict[str, Any]) -> list[str]:
    """One bullet: the live widget's CPU ratio to headless per case, with the A/A control."""
    parts, loaded = [], []
    for case in results["cases"]:
        rows = case["contenders"]
        live, control = rows["live"], rows["headless-again"]
        if case.get("busy_cores"):
            loaded.append(
                f"{case['case']}, {case['threads']} torch threads: live / headless wall time "
                f"x{fmt(live['wall_ratio'])} (median of {case['rounds']} rounds; A/A "
                f"x{fmt(control['wall_ratio'])})"
            )
            continue
        parts.append(
            f"{case['case']} x{fmt(live['cpu_ratio'])} (95% {_interval(live, 'cpu')}; "
            f"{fmt(live['cpu_extra_ms'])} ms per sweep; A/A x{fmt(control['cpu_ratio'])})"
        )
    lines = [
        "Live widget / headless, CPU time in one process, kernel-encoded messages: "
        + "; ".join(parts)
        + "."
    ]
    if loaded:
        lines.append("The widget under load: " + "; ".join(loaded) + ".")
    return lines


def widget_cost_section(results: dict[str, Any]) -> str:
    """A table per case: every contender's ratio to ``headless`` in CPU and wall time."""
    parts = [
        "## The live widget's own cost",
        f"Command: `.venv-bench/bin/python -m benchmarks.widget_cost{quick_flag(results)}`. "
        "Every contender runs in "
        "one process (one torch thread), each on its own copy of the same model, in interleaved "
        "rounds whose order rotates; a ratio divides a contender's time by `headless`'s in the "
        "same round, and the table gives the median over rounds, its quartiles and a "
        "distribution-free 95% interval of the median. CPU time counts every thread of the "
        "process. Each widget message is built, JSON-encoded and HMAC-signed by a "
        "`jupyter_client` Session on the thread that sends it, as in a kernel, short of the "
        "socket. `headless-in-thread` separates the cost of sweeping in a thread from the "
        "cost of drawing; `live-fresh-thread` adds a thread start per sweep, as a notebook pays "
        "once the previous sweep's thread has idled out.",
    ]
    target_rows = []
    for case in results["cases"]:
        rows = case["contenders"]
        table = [
            [
                name,
                _ROLES.get(name, ""),
                fmt(row["median_cpu_ms"]),
                f"{fmt(row['cpu_ratio'])} ({_quartiles(row, 'cpu')})",
                _interval(row, "cpu"),
                fmt(row["cpu_extra_ms"]),
                f"{fmt(row['wall_ratio'])} ({_quartiles(row, 'wall')})",
            ]
            for name, row in rows.items()
        ]
        load = ""
        if case.get("busy_cores"):
            load = (
                f", beside {case['busy_cores']} busy core(s), {case['threads']} torch threads "
                "(read the wall-time ratio)"
            )
        parts.append(
            f"### {case['case']}: {case['description']}, {case['num_steps']} steps, "
            f"{case['rounds']} rounds{load}"
        )
        parts.append(
            markdown_table(
                [
                    "contender",
                    "what",
                    "median CPU (ms)",
                    "CPU / headless (quartiles)",
                    "95% interval",
                    "CPU beyond headless (ms)",
                    "wall / headless (quartiles)",
                ],
                table,
            )
        )
        low, high = case["drawing_cpu_ratio_interval"]
        parts.append(
            f"The live widget sent {case['messages_per_sweep']} messages per sweep, the largest "
            f"{fmt(case['largest_message_bytes'] / 1024)} KiB. The drawing alone (`live` / "
            f"`headless-in-thread`, same round): x{fmt(case['drawing_cpu_ratio'])} (95% "
            f"{fmt(low)}-{fmt(high)}), {fmt(case['drawing_cpu_extra_ms'])} ms CPU per sweep."
        )
        if case["target"] is not None:
            live = rows["live"]
            target_rows.append(
                [
                    f"{case['case']}: live widget within {round((case['target'] - 1) * 100)}% "
                    "of headless (CPU)",
                    f"x{fmt(live['cpu_ratio'])} (95% {_interval(live, 'cpu')})",
                    _verdict(case),
                ]
            )
    if target_rows:
        parts.append(markdown_table(["target", "measured", "met"], target_rows))
    parts.append(environment_section(results["environment"]))
    return "\n\n".join(parts)
