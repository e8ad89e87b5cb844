"""Helpers of :class:`~lr_widget.widget.LRWidget` that need no widget state.

Checking the widget's own options, what a saved result says about its sweep, the status line of
a finished sweep, writing into the notebook namespace, and finding every widget to close.
"""

from __future__ import annotations

import keyword
import math
from typing import Any

import ipywidgets
import torch

from lr_widget.result import RangeTestResult
from lr_widget.settings import SweepSettings

__all__ = [
    "assign_in_notebook",
    "check_widget_options",
    "describe_end",
    "settings_of",
    "status_of",
    "widget_tree",
    "x_range",
]


def check_widget_options(
    result: Any, autostart: Any, apply_to: Any, assign_to: Any, update_interval_s: Any
) -> None:
    """Check the widget's own options (the engine checks the sweep's), naming the bad one."""
    if result is not None and not isinstance(result, RangeTestResult):
        raise TypeError(f"result must be a RangeTestResult or None, got {result!r}")
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


def settings_of(result: RangeTestResult | None) -> SweepSettings:
    """The sweep settings a saved result was made with, as far as they are still valid."""
    saved = dict(result.settings) if result is not None else {}
    known = {
        key: value for key, value in saved.items() if key in SweepSettings.__dataclass_fields__
    }
    try:
        return SweepSettings(**known)
    except (TypeError, ValueError):
        return SweepSettings()


def x_range(settings: SweepSettings, result: RangeTestResult | None) -> tuple[float, float]:
    """The x range to show: the sweep's range, widened to every recorded LR."""
    low, high = settings.start_lr, settings.end_lr
    if result is not None:
        recorded = [lr for lr in result.lrs if math.isfinite(lr) and lr > 0]
        if recorded and not result.settings:
            low, high = min(recorded), max(recorded)
        elif recorded:
            low, high = min(low, *recorded), max(high, *recorded)
    if not low < high:
        low, high = low / 10, high * 10
    return low, high


def status_of(result: RangeTestResult | None, error: BaseException | None) -> tuple[str, bool]:
    """The status line of a finished sweep, and whether it reports an error.

    >>> from lr_widget import StopReason
    >>> done = RangeTestResult([1e-3], [1.0], stop_reason=StopReason.STOPPED,
    ...                        stop_detail="stopped by the caller before step 1")
    >>> status_of(done, None)
    ('stopped by the caller before step 1', False)
    """
    if error is not None and (result is None or not result.stop_detail):
        return f"error: {type(error).__name__}: {error}", True
    if result is None:
        return "the sweep ended without a result", True
    return describe_end(result), error is not None


def describe_end(result: RangeTestResult) -> str:
    """``"<stop reason>: <detail>"``, not repeating the reason when the detail starts with it."""
    reason, detail = str(result.stop_reason), result.stop_detail
    if not detail or detail.startswith(reason):
        return detail or reason
    return f"{reason}: {detail}"


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
