"""Building the widget: arguments checked at the boundary, autostart on display, DOM hooks."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from typing import Any

import pytest

import lr_widget
from lr_widget.results.range_test import RangeTestResult
from lr_widget.suggestions.registry import RULES
from lr_widget.widget import LRWidget
from lr_widget.widget.clicks import TOOLTIP_CLASS
from lr_widget.widget.controls import STATUS_CLASS
from lr_widget.widget.widget import ROOT_CLASS

from .scripted import ScriptedStep, Setup

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def test_the_package_exposes_the_widget_lazily() -> None:
    assert lr_widget.LRWidget is LRWidget


def test_the_widget_imports_cleanly_with_warnings_as_errors() -> None:
    # bqscales warns at import (traitlets metadata); lr_widget.widget silences exactly that.
    code = "import lr_widget.widget"
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_displaying_starts_the_sweep_once(setup: Setup) -> None:
    step = ScriptedStep(hold_at=2)
    w = setup.widget(step, autostart=True)
    assert not w.running
    assert step.calls == 0

    bundle = w._repr_mimebundle_()
    assert WIDGET_VIEW in bundle
    step.wait_until_held()
    assert w.running
    w._repr_mimebundle_()  # displayed again: still one sweep
    step.release()
    result = w.wait()
    assert result is not None
    assert result.num_steps == 20
    assert step.calls == 20


def test_autostart_false_waits_for_run(setup: Setup) -> None:
    step = ScriptedStep()
    w = setup.widget(step, autostart=False)
    w._repr_mimebundle_()
    assert not w.running
    assert step.calls == 0
    assert "press Run" in w.controls.status.value


def test_dom_hooks_for_browser_tests(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    controls = w.controls
    assert ROOT_CLASS == "lr-widget"
    assert ROOT_CLASS in w._dom_classes
    assert STATUS_CLASS == "lr-widget-status"
    assert STATUS_CLASS in controls.status._dom_classes
    assert TOOLTIP_CLASS == "lr-widget-tooltip"
    assert TOOLTIP_CLASS in w.plot.hover_points.tooltip._dom_classes
    assert controls.run_button.description == "Run"
    assert controls.stop_button.description == "Stop"
    assert [b.description for b in controls.suggestion_buttons.values()] == list(RULES)
    assert w.plot.figure in w.children


def test_building_the_widget_warns_nothing(setup: Setup) -> None:
    # bqplot silently ignores a misspelt or deprecated option, with only a warning (which the
    # test settings hide for traitlets): the option would have no effect in the browser.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        setup.widget(ScriptedStep())
    assert [str(warning.message) for warning in caught] == []


def test_lr_is_not_synced_to_the_browser(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    assert "lr" not in w.keys


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({}, TypeError, "needs a model and train_data"),
        ({"start_lr": 1e-3}, TypeError, "no model"),
        ({"result": "sweep.json"}, TypeError, "result must be a RangeTestResult"),
        ({"result": RangeTestResult([1e-3], [1.0]), "autostart": 1}, TypeError, "autostart"),
        ({"result": RangeTestResult([1e-3], [1.0]), "apply_to": "adam"}, TypeError, "apply_to"),
        ({"result": RangeTestResult([1e-3], [1.0]), "assign_to": "my lr"}, ValueError, "assign_to"),
        ({"result": RangeTestResult([1e-3], [1.0]), "assign_to": "class"}, ValueError, "assign_to"),
        (
            {"result": RangeTestResult([1e-3], [1.0]), "update_interval_s": math.nan},
            ValueError,
            "update_interval_s",
        ),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        LRWidget(**kwargs)


def test_engine_arguments_are_checked_by_the_engine(setup: Setup) -> None:
    with pytest.raises(ValueError, match="start_lr must be smaller than end_lr"):
        setup.widget(start_lr=1.0, end_lr=1e-3)
    with pytest.raises(TypeError, match="train_data"):
        LRWidget(setup.model)


def test_repr_is_short(setup: Setup) -> None:
    w = setup.widget(ScriptedStep())
    assert repr(w) == "LRWidget(lr=none, result=None)"
