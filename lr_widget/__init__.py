"""lr_widget: a live, clickable learning-rate range test for PyTorch.

The engine (``find_lr``, ``LRFinder``, ``RangeTestResult``, the suggestion rules) imports torch and
numpy only; the Jupyter widget ``LRWidget`` is imported on first use, so scripts and servers never
load ipywidgets or bqplot.

Examples
--------
>>> from lr_widget import find_lr  # doctest: +SKIP
>>> result = find_lr(model, train_loader)  # doctest: +SKIP
>>> result.suggested_lr  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lr_widget.engine import LRFinder, StepEvent, find_lr
from lr_widget.result import RangeTestResult, StopReason
from lr_widget.settings import SweepSettings
from lr_widget.suggestions import (
    Suggestion,
    suggest,
    suggest_all,
    suggest_minimum,
    suggest_slide,
    suggest_steep,
    suggest_valley,
)

if TYPE_CHECKING:
    from lr_widget.widget import LRWidget

__version__ = "0.1.0"

__all__ = [
    "LRFinder",
    "LRWidget",
    "RangeTestResult",
    "StepEvent",
    "StopReason",
    "Suggestion",
    "SweepSettings",
    "__version__",
    "find_lr",
    "suggest",
    "suggest_all",
    "suggest_minimum",
    "suggest_slide",
    "suggest_steep",
    "suggest_valley",
]


def __getattr__(name: str) -> Any:
    # The widget pulls in ipywidgets and bqplot: load it only when asked for.
    if name == "LRWidget":
        from lr_widget.widget import LRWidget

        return LRWidget
    raise AttributeError(f"module 'lr_widget' has no attribute {name!r}")
