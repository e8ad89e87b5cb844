"""What every benchmark shares: where results live, reading them, and formatting them.

Imports nothing from the other benchmark modules (and no torch), so any of them can import it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "RESULTS_DIR",
    "describe_thresholds",
    "environment_section",
    "fmt",
    "load_json",
    "markdown_table",
    "quick_flag",
    "ratio_cell",
    "yes_or_no",
]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
"""``benchmarks/results``: every benchmark's JSON; ``RESULTS.md`` is written beside it."""


def load_json(path: Path) -> dict[str, Any] | None:
    """The JSON object saved at ``path``, or None when there is no such file."""
    if not path.exists():
        return None
    document = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise ValueError(f"{path} holds a {type(document).__name__}, not a JSON object")
    return document


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` significant digits; ``-`` for None or NaN.

    >>> fmt(1.23456), fmt(1e-6), fmt(12), fmt(None), fmt(float("nan"))
    ('1.23', '1.00e-06', '12', '-', '-')
    """
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


def ratio_cell(ratio: float, bounds: Sequence[float]) -> str:
    """A ratio with its range in brackets.

    >>> ratio_cell(1.05, [1.0, 1.1])
    '1.05 (1-1.1)'
    """
    return f"{fmt(ratio)} ({fmt(bounds[0])}-{fmt(bounds[1])})"


def yes_or_no(flag: bool) -> str:
    """A target's verdict: ``yes``, or a bold ``no``."""
    return "yes" if flag else "**no**"


def quick_flag(results: dict[str, Any]) -> str:
    """`` --quick`` for the command line of a ``--quick`` run's results, else nothing."""
    return " --quick" if results.get("quick") else ""


def describe_thresholds(thresholds: dict[str, int]) -> str:
    """glibc's heap thresholds, as :func:`benchmarks.heap.keep_freed_memory` returns them, in
    words.

    >>> describe_thresholds({"mmap_threshold_bytes": 32 << 20, "trim_threshold_bytes": 1 << 30})
    'mmap threshold 32 MiB, trim threshold 1024 MiB'
    """
    return (
        f"mmap threshold {thresholds['mmap_threshold_bytes'] >> 20} MiB, "
        f"trim threshold {thresholds['trim_threshold_bytes'] >> 20} MiB"
    )


def environment_section(environment: dict[str, Any]) -> str:
    """Machine and versions (as :mod:`benchmarks.environment` records them) as a two-column
    table."""
    anchors = environment.get("anchors", {})
    rows: list[list[Any]] = [
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
        kept = f"freed memory kept: {describe_thresholds(environment['heap'])}"
        rows.append(["glibc heap (benchmarks/heap.py)", kept])
    return markdown_table(["", ""], rows)


def _pair(environment: dict[str, Any], first: str, second: str) -> str:
    return f"{environment.get(first)} ({environment.get(second)})"


def _loads(environment: dict[str, Any]) -> str:
    start = environment.get("load_average") or []
    end = environment.get("load_average_end") or []
    return f"{' '.join(map(str, start[:1]))} / {' '.join(map(str, end[:1]))} (1-minute)"
