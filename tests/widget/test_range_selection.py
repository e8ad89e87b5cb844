"""Selecting an LR range: a drag with the brush in range mode, or ``select_range``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import traitlets

from lr_widget.results.range_test import RangeTestResult
from lr_widget.widget import LRWidget
from lr_widget.widget.controls import RANGE_BUTTON

from .frontend import click_plot, drag_range, drawn, toggle
from .scripted import ScriptedStep, Setup, valley_curve

LRS = np.logspace(-6, 0, 61).tolist()  # ten per decade: 1e-6, 1.26e-6, ...


@pytest.fixture
def w() -> Any:
    widget = LRWidget.from_result(RangeTestResult(lrs=LRS, losses=[valley_curve(lr) for lr in LRS]))
    yield widget
    widget.close()


def test_range_mode_switches_the_plot_between_clicking_and_dragging(w: LRWidget) -> None:
    button = w.controls.range_button
    assert button.description == RANGE_BUTTON
    assert w.plot.figure.interaction is None  # clicks reach the overlay
    toggle(button, True)
    assert w.plot.figure.interaction is w.plot.ranges.brush
    assert w.plot.range_mode
    toggle(button, False)
    assert w.plot.figure.interaction is None
    click_plot(w, LRS[30] * 1.05)
    assert w.lr == LRS[30]


def test_a_drag_selects_the_range_snapped_to_recorded_lrs(w: LRWidget) -> None:
    seen: list[Any] = []
    w.observe(lambda change: seen.append(change["new"]), "lr_range")
    toggle(w.controls.range_button, True)

    drag_range(w, 1.1e-4, 2.7e-2)  # nearest recorded: 1e-4 (index 20) and 2.51e-2 (index 44)

    assert w.lr_range == (LRS[20], LRS[44])
    assert seen == [(LRS[20], LRS[44])]
    assert w.lr is None  # a range, not an LR
    label = w.controls.range_label.value
    assert label == f"range {LRS[20]:.1e} – {LRS[44]:.1e}"
    assert label == "range 1.0e-04 – 2.5e-02"
    span = w.plot.ranges.span
    assert span.visible
    assert drawn(span.x).tolist() == [LRS[20], LRS[44]]
    assert drawn(span.y).tolist() == [[0.0, 0.0], [1.0, 1.0]]


def test_the_brush_rectangle_moves_onto_the_snapped_range_when_the_drag_ends(
    w: LRWidget,
) -> None:
    """One rectangle, not two offset ones: the brush's own rectangle is moved onto the span of
    the snapped range once the mouse is released, never during the drag."""
    toggle(w.controls.range_button, True)
    brush = w.plot.ranges.brush
    brush.brushing = True  # the browser's brush start
    drag_range(w, 1.1e-4, 2.7e-2)
    assert drawn(brush.selected).tolist() == [1.1e-4, 2.7e-2]  # left alone while dragging
    brush.brushing = False  # the browser's brush end
    assert drawn(brush.selected).tolist() == [LRS[20], LRS[44]]
    assert drawn(w.plot.ranges.span.x).tolist() == [LRS[20], LRS[44]]
    drag_range(w, 2e-3, 9e-2)  # a drag reported at once, with no brushing flag: snapped too
    assert drawn(brush.selected).tolist() == list(w.lr_range)


def test_a_right_to_left_drag_gives_the_same_range(w: LRWidget) -> None:
    drag_range(w, 2.7e-2, 1.1e-4)
    assert w.lr_range == (LRS[20], LRS[44])


def test_a_drag_within_one_recorded_lr_keeps_the_range_and_says_why(w: LRWidget) -> None:
    drag_range(w, 1.1e-4, 2.7e-2)
    drag_range(w, 1.01e-3, 1.05e-3)  # both ends snap to 1e-3
    assert w.lr_range == (LRS[20], LRS[44])
    assert "drag across at least two recorded LRs" in w.controls.range_label.value


def test_select_range_snaps_and_moves_the_brush(w: LRWidget) -> None:
    assert w.select_range(1.1e-4, 2.7e-2) == (LRS[20], LRS[44])
    assert w.lr_range == (LRS[20], LRS[44])
    assert drawn(w.plot.ranges.brush.selected).tolist() == [LRS[20], LRS[44]]
    w.lr_range = None
    assert not w.plot.ranges.span.visible
    assert w.controls.range_label.layout.display == "none"


@pytest.mark.parametrize(
    ("low", "high", "match"),
    [
        (None, 1e-2, "low must be a finite number > 0, got None"),
        (1e-4, float("nan"), "high must be a finite number > 0"),
        (1e-2, 1e-4, "low must be smaller than high"),
        (1.01e-3, 1.05e-3, "covers a single recorded LR"),
    ],
)
def test_select_range_names_a_bad_range(w: LRWidget, low: Any, high: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        w.select_range(low, high)
    assert w.lr_range is None


def test_lr_range_rejects_an_empty_or_reversed_range(w: LRWidget) -> None:
    with pytest.raises(traitlets.TraitError, match="0 < low < high"):
        w.lr_range = (1e-2, 1e-4)


def test_nothing_is_selected_before_a_sweep(setup: Setup) -> None:
    live = setup.widget(ScriptedStep())
    with pytest.raises(ValueError, match="no recorded learning rates"):
        live.select_range(1e-4, 1e-2)
    drag_range(live, 1e-4, 1e-2)
    assert live.lr_range is None
    assert "run a sweep first" in live.controls.range_label.value
