"""lr_widget: a live, clickable learning-rate range test for PyTorch.

The engine (``find_lr``, ``LRFinder``, ``RangeTestResult``, the suggestion rules) imports torch and
numpy only; the Jupyter widget ``LRWidget`` is imported on first use, so scripts and servers never
load ipywidgets or bqplot.

Examples
--------
>>> import torch
>>> from lr_widget import find_lr
>>> model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
>>> train_loader = [(torch.randn(32, 4), torch.randint(0, 3, (32,))) for _ in range(8)]
>>> result = find_lr(model, train_loader, num_steps=50)
>>> print(result.summary())  # doctest: +ELLIPSIS
RangeTestResult(... steps, lr 1.00e-07 -> ...)
...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lr_widget.diagnostics.curvature import estimate_curvature
from lr_widget.engine.recording import StepEvent
from lr_widget.engine.repeated_sweep import RepeatedSweep
from lr_widget.engine.sweep import LRFinder
from lr_widget.find import find_lr
from lr_widget.results.compare import Comparison
from lr_widget.results.curvature import CurvatureEstimate
from lr_widget.results.loading import load_result
from lr_widget.results.protocol import SweepResult
from lr_widget.results.range_test import RangeTestResult, StopReason
from lr_widget.results.repeated import RepeatedRangeTest
from lr_widget.results.settings import SweepSettings
from lr_widget.suggestions import (
    suggest_consensus,
    suggest_minimum,
    suggest_slide,
    suggest_steep,
    suggest_valley,
)
from lr_widget.suggestions.curve import Suggestion
from lr_widget.suggestions.registry import suggest, suggest_all
from lr_widget.version import __version__

if TYPE_CHECKING:
    from lr_widget.widget.widget import LRWidget

__all__ = [
    "Comparison",
    "CurvatureEstimate",
    "LRFinder",
    "LRWidget",
    "RangeTestResult",
    "RepeatedRangeTest",
    "RepeatedSweep",
    "StepEvent",
    "StopReason",
    "Suggestion",
    "SweepResult",
    "SweepSettings",
    "__version__",
    "estimate_curvature",
    "find_lr",
    "load_result",
    "suggest",
    "suggest_all",
    "suggest_consensus",
    "suggest_minimum",
    "suggest_slide",
    "suggest_steep",
    "suggest_valley",
]


def __getattr__(name: str) -> Any:
    # The widget pulls in ipywidgets and bqplot: load it only when asked for.
    if name == "LRWidget":
        from lr_widget.widget.widget import LRWidget

        return LRWidget
    raise AttributeError(f"module 'lr_widget' has no attribute {name!r}")
