"""Helpers of :class:`~lr_widget.widget.LRWidget` that need no widget state.

Checking the widget's own options and building its engine, reading a result to show, the x range
and the optimizer a sweep is for, writing into the notebook namespace, and finding every widget
to close.
"""

from __future__ import annotations

import inspect
import keyword
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets
import torch

from lr_widget.diagnostics.curvature import estimate_curvature
from lr_widget.engine.batches import LossFn
from lr_widget.engine.inputs import optimizer_name
from lr_widget.engine.runner import RangeTestRunner, make_runner
from lr_widget.engine.sweep import LRFinder
from lr_widget.frameworks import SweepInputs, adapt
from lr_widget.results.compare import Comparison
from lr_widget.results.loading import load_result
from lr_widget.results.protocol import SweepResult
from lr_widget.results.settings import SweepSettings

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
    if result is not None and not isinstance(result, SweepResult):
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


def make_engine(
    model: Any,
    train_data: Iterable[Any] | None,
    loss_fn: LossFn | None,
    optimizer: torch.optim.Optimizer | None,
    *,
    repeats: int | None,
    seed: int | None,
    engine_options: Mapping[str, Any],
    has_result: bool,
    wants_curvature: bool,
) -> tuple[RangeTestRunner | None, SweepInputs | None]:
    """The widget's runner (:func:`~lr_widget.engine.runner.make_runner`: one sweep or
    ``repeats`` of them) and what it sweeps (a framework object read by
    :func:`~lr_widget.frameworks.adapt`), or neither for a saved result only."""
    if model is None:
        given = [train_data, loss_fn, optimizer, repeats, seed]
        if any(value is not None for value in given) or engine_options or wants_curvature:
            raise TypeError("LRWidget got sweep arguments but no model; pass the model first")
        if not has_result:
            raise TypeError(
                "LRWidget needs a model and train_data, or a saved result: "
                "LRWidget(model, train_data, ...) or LRWidget.from_result(result_or_path)"
            )
        return None, None
    inputs = adapt(model, train_data, loss_fn, optimizer, dict(engine_options))
    runner = make_runner(
        inputs.model, inputs.train_data, inputs.loss_fn, inputs.optimizer, repeats=repeats,
        seed=seed, **inputs.options,
    )  # fmt: skip
    return runner, inputs


def read_result(result: Any) -> SweepResult:
    """A private copy of a single or repeated result, or the result saved at a path."""
    if isinstance(result, (str, os.PathLike)):
        return load_result(result)
    if isinstance(result, SweepResult):
        return result.copy()
    raise TypeError(
        "result must be a RangeTestResult, a RepeatedRangeTest or the path of a saved one, "
        f"got {result!r}"
    )


def comparison_of(
    results_or_paths: Comparison | Iterable[SweepResult | str | os.PathLike[str]],
    labels: Sequence[str] | None,
) -> Comparison:
    """A new comparison of private copies of ``results_or_paths`` (results, paths, or a
    comparison with its labels), labelled ``labels`` or by default (:func:`default_labels`)."""
    if isinstance(results_or_paths, Comparison):
        labels = results_or_paths.labels if labels is None else labels
        results_or_paths = results_or_paths.results
    if isinstance(results_or_paths, (str, os.PathLike, SweepResult)):
        raise TypeError("compare() takes a list of results or paths, not a single one")
    items = list(results_or_paths)
    if not items:
        raise ValueError("compare() needs at least one result or path")
    if labels is not None and len(labels) != len(items):
        raise ValueError(
            f"labels must have one entry per result, got {len(labels)} labels for "
            f"{len(items)} results"
        )
    names = list(labels) if labels is not None else default_labels(items)
    comparison = Comparison()
    for item, name in zip(items, names, strict=True):
        comparison.add(read_result(item), name)
    return comparison


def default_labels(items: Sequence[Any]) -> list[str | None]:
    """File stems for paths (made unique: ``"sweep"``, ``"sweep (2)"``), ``None`` for objects."""
    labels: list[str | None] = []
    for item in items:
        stem = Path(item).stem if isinstance(item, (str, os.PathLike)) else None
        if stem is not None:
            base, number = stem, 2
            while stem in labels:
                stem, number = f"{base} ({number})", number + 1
        labels.append(stem)
    return labels


def x_range(settings: SweepSettings, *results: SweepResult | None) -> tuple[float, float]:
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
    first = results[0] if results else None
    if recorded and first is not None and first.runs and not first.settings:
        low, high = min(recorded), max(recorded)
    elif recorded:
        low, high = min(low, *recorded), max(high, *recorded)
    if not low < high:
        low, high = low / 10, high * 10
    return low, high


def optimizer_note(finder: LRFinder | None, result: SweepResult | None) -> str:
    """Which optimizer the LR is for: ``"optimizer: AdamW (default)"``; from a saved result's
    metadata when there is no model; ``""`` when unknown."""
    name: Any
    if finder is not None:
        name = optimizer_name(finder.optimizer) + (" (default)" if finder.owns_optimizer else "")
        framework = None if finder.outer_state is None else finder.outer_state.name
    else:
        metadata = {} if result is None else result.metadata
        name, framework = metadata.get("optimizer"), metadata.get("framework")
        if not (isinstance(name, str) and name):
            return ""
    through = f", through the {framework}" if isinstance(framework, str) and framework else ""
    return f"optimizer: {name}{through}"


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
