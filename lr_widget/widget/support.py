"""Helpers of :class:`~lr_widget.widget.LRWidget` that need no widget state.

Checking the widget's own options, what a saved result says about its sweep, copying and
re-smoothing single and repeated results, the status and progress lines of a finished sweep, the
optimizer it swept, writing into the notebook namespace, and finding every widget to close.
"""

from __future__ import annotations

import dataclasses
import inspect
import keyword
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ipywidgets
import torch

from lr_widget.compare import AnyResult, load_result
from lr_widget.curvature import estimate_curvature
from lr_widget.engine import LRFinder
from lr_widget.repeats import RepeatedRangeTest
from lr_widget.result import RangeTestResult, StopReason
from lr_widget.settings import SweepSettings
from lr_widget.widget.controls import format_seconds

__all__ = [
    "CURVATURE_OPTIONS",
    "assign_in_notebook",
    "check_curvature_option",
    "check_widget_options",
    "copy_result",
    "describe_end",
    "done_text",
    "first_run",
    "has_data",
    "label_of",
    "optimizer_note",
    "read_result",
    "set_beta",
    "settings_of",
    "status_of",
    "widget_tree",
    "x_range",
]

# The estimate_curvature options a widget's ``curvature={...}`` may set (the widget passes the
# model, data, loss, optimizer and step_fn itself).
CURVATURE_OPTIONS = frozenset(inspect.signature(estimate_curvature).parameters) - {
    "model",
    "train_data",
    "loss_fn",
    "optimizer",
    "step_fn",
}


def check_widget_options(
    result: Any, autostart: Any, apply_to: Any, assign_to: Any, update_interval_s: Any
) -> None:
    """Check the widget's own options (the engine checks the sweep's), naming the bad one."""
    if result is not None and not isinstance(result, (RangeTestResult, RepeatedRangeTest)):
        raise TypeError(
            f"result must be a RangeTestResult, a RepeatedRangeTest or None, got {result!r}"
        )
    if not isinstance(autostart, bool):
        raise TypeError(f"autostart must be True or False, got {autostart!r}")
    if apply_to is not None and not isinstance(apply_to, torch.optim.Optimizer):
        raise TypeError(f"apply_to must be a torch.optim.Optimizer or None, got {apply_to!r}")
    if assign_to is not None and (
        not isinstance(assign_to, str)
        or not assign_to.isidentifier()
        or keyword.iskeyword(assign_to)
    ):
        raise ValueError(f"assign_to must be a Python variable name or None, got {assign_to!r}")
    if (
        isinstance(update_interval_s, bool)
        or not isinstance(update_interval_s, (int, float))
        or not (math.isfinite(update_interval_s) and update_interval_s >= 0)
    ):
        raise ValueError(
            f"update_interval_s must be a number of seconds >= 0, got {update_interval_s!r}"
        )


def check_curvature_option(curvature: Any) -> dict[str, Any] | None:
    """``curvature=`` as estimate_curvature options: ``None`` for off, ``{}`` for defaults."""
    if isinstance(curvature, bool):
        return {} if curvature else None
    if isinstance(curvature, Mapping):
        unknown = sorted(set(curvature) - CURVATURE_OPTIONS)
        if unknown:
            raise ValueError(
                f"curvature options {unknown} are not estimate_curvature options; valid keys are "
                f"{sorted(CURVATURE_OPTIONS)}"
            )
        return dict(curvature)
    raise TypeError(
        f"curvature must be True, False or a dict of estimate_curvature options, got {curvature!r}"
    )


def read_result(result: Any) -> AnyResult:
    """A private copy of a single or repeated result, or the result saved at a path."""
    if isinstance(result, (str, os.PathLike)):
        return load_result(result)
    if isinstance(result, (RangeTestResult, RepeatedRangeTest)):
        return copy_result(result)
    raise TypeError(
        "result must be a RangeTestResult, a RepeatedRangeTest or the path of a saved one, "
        f"got {result!r}"
    )


def label_of(item: Any) -> str | None:
    """A path's file stem (a comparison's default label), else ``None``."""
    return Path(item).stem if isinstance(item, (str, os.PathLike)) else None


def copy_result(result: AnyResult) -> AnyResult:
    """A copy whose re-smoothing (``beta``) never changes ``result``."""
    if isinstance(result, RepeatedRangeTest):
        return dataclasses.replace(result, runs=[dataclasses.replace(r) for r in result.runs])
    return dataclasses.replace(result)


def has_data(result: AnyResult | None) -> bool:
    """Whether ``result`` has anything to draw (a step, or a finished run)."""
    if isinstance(result, RepeatedRangeTest):
        return bool(result.runs)
    return result is not None and result.num_steps > 0


def set_beta(result: AnyResult, beta: float) -> None:
    """Re-smooth ``result`` in place (every run of a repeated one)."""
    runs = result.runs if isinstance(result, RepeatedRangeTest) else [result]
    for run in runs:
        run.beta = beta


def first_run(result: AnyResult | None) -> RangeTestResult | None:
    """The result itself, or a repeated result's first run (its settings and metadata)."""
    if isinstance(result, RepeatedRangeTest):
        return result.runs[0] if result.runs else None
    return result


def settings_of(result: AnyResult | None) -> SweepSettings:
    """The sweep settings a saved result was made with, as far as they are still valid."""
    run = first_run(result)
    saved = dict(run.settings) if run is not None else {}
    known = {
        key: value for key, value in saved.items() if key in SweepSettings.__dataclass_fields__
    }
    try:
        return SweepSettings(**known)
    except (TypeError, ValueError):
        return SweepSettings()


def x_range(settings: SweepSettings, *results: AnyResult | None) -> tuple[float, float]:
    """The x range to show: the sweep's range, widened to every recorded LR of ``results``
    (only those LRs when the first result has no saved settings)."""
    low, high = settings.start_lr, settings.end_lr
    recorded = [
        float(lr)
        for result in results
        if result is not None
        for lr in result.lrs
        if math.isfinite(lr) and lr > 0
    ]
    first = first_run(results[0]) if results else None
    if recorded and first is not None and not first.settings:
        low, high = min(recorded), max(recorded)
    elif recorded:
        low, high = min(low, *recorded), max(high, *recorded)
    if not low < high:
        low, high = low / 10, high * 10
    return low, high


def status_of(result: AnyResult | None, error: BaseException | None) -> tuple[str, bool]:
    """The status line of a finished sweep, and whether it reports an error.

    >>> from lr_widget import StopReason
    >>> done = RangeTestResult([1e-3], [1.0], stop_reason=StopReason.STOPPED,
    ...                        stop_detail="stopped by the caller before step 1")
    >>> status_of(done, None)
    ('stopped by the caller before step 1', False)
    """
    if isinstance(result, RepeatedRangeTest):
        if error is not None:
            return f"error in run {len(result.runs) + 1}: {type(error).__name__}: {error}", True
        return describe_end(result), False
    if error is not None and (result is None or not result.stop_detail):
        return f"error: {type(error).__name__}: {error}", True
    if result is None:
        return "the sweep ended without a result", True
    return describe_end(result), error is not None


def describe_end(result: AnyResult) -> str:
    """``"<stop reason>: <detail>"``, not repeating the reason when the detail starts with it;
    for repeated runs, how many ran and how each ended (``"completed: 5 of 5 runs"``)."""
    if isinstance(result, RepeatedRangeTest):
        return _describe_repeated(result)
    reason, detail = str(result.stop_reason), result.stop_detail
    if not detail or detail.startswith(reason):
        return detail or reason
    return f"{reason}: {detail}"


def _describe_repeated(result: RepeatedRangeTest) -> str:
    planned = result.repeats if result.repeats is not None else len(result.runs)
    ends: dict[str, int] = {}
    for run in result.runs:
        ends[str(run.stop_reason)] = ends.get(str(run.stop_reason), 0) + 1
    stopped = any(run.stop_reason is StopReason.STOPPED for run in result.runs)
    head = "stopped" if stopped else "completed" if len(result.runs) == planned else "ended"
    how = ", ".join(f"{count} {reason}" for reason, count in ends.items())
    return f"{head}: {len(result.runs)} of {planned} runs" + (f" ({how})" if how else "")


def done_text(result: AnyResult | None, error: BaseException | None, seconds: float) -> str:
    """The progress line once a sweep has ended: ``"done: 60 steps in 3 s"``, or the stop
    reason instead of ``done`` (``"diverged: 41 steps in 2 s"``)."""
    # Short sweeps are common (tests, demos): tenths of a second say more than "0 s".
    took = f"{seconds:.1f} s" if seconds < 10 else format_seconds(seconds)
    if isinstance(result, RepeatedRangeTest):
        steps = sum(run.num_steps for run in result.runs)
        runs = f"{len(result.runs)} run{'' if len(result.runs) == 1 else 's'}"
        head = "error" if error is not None else describe_end(result).split(":")[0]
        head = "done" if head == "completed" else head
        return f"{head}: {runs}, {steps} steps in {took}"
    if result is None:
        return f"error after {took}" if error is not None else f"ended after {took}"
    reason = result.stop_reason
    head = "done" if reason is StopReason.COMPLETED else str(reason)
    return f"{head}: {result.num_steps} steps in {took}"


def optimizer_note(finder: LRFinder | None, result: AnyResult | None) -> str:
    """Which optimizer the LR is for: ``"optimizer: AdamW (default)"``; from a saved result's
    metadata when there is no model; ``""`` when unknown."""
    if finder is not None:
        name = type(finder.optimizer).__name__
        return f"optimizer: {name} (default)" if finder.owns_optimizer else f"optimizer: {name}"
    run = first_run(result)
    saved = None if run is None else run.metadata.get("optimizer")
    return f"optimizer: {saved}" if isinstance(saved, str) and saved else ""


def assign_in_notebook(name: str, value: float) -> None:
    """Write ``value`` to variable ``name`` of the IPython namespace, when there is one."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None:
        shell.user_ns[name] = value


def widget_tree(root: Any) -> list[Any]:
    """Every widget reachable from ``root``'s synced traits (children, marks, scales, layouts),
    excluding ``root``."""
    found: dict[int, Any] = {id(root): root}
    stack = [root]
    while stack:
        widget = stack.pop()
        for name in widget.keys:
            for item in _widgets_in(getattr(widget, name, None)):
                if id(item) not in found:
                    found[id(item)] = item
                    stack.append(item)
    del found[id(root)]
    return list(found.values())


def _widgets_in(value: Any) -> list[Any]:
    if isinstance(value, dict):
        value = list(value.values())
    items = value if isinstance(value, (list, tuple)) else [value]
    return [item for item in items if isinstance(item, ipywidgets.Widget)]
