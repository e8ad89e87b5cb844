"""The curvature bound on the plot: estimated before the sweep, or shown from an estimate."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from lr_widget.diagnostics.curvature import estimate_curvature
from lr_widget.results.curvature import CurvatureEstimate
from lr_widget.results.range_test import RangeTestResult
from lr_widget.widget import LRWidget
from tests.helpers import assert_restored, capture, warm_optimizer

from .frontend import drawn
from .scripted import Setup


def _estimate(bound: float | None, applies: bool = True) -> CurvatureEstimate:
    lam = 1.0 if bound is None else 2.0 / bound
    return CurvatureEstimate(lam, bound, "gd", applies, "why: a test estimate", 10, True, 4, "2/λ")


def test_the_line_stands_at_the_estimated_bound(setup: Setup) -> None:
    warm_optimizer(setup.model, setup.optimizer)
    expected = estimate_curvature(setup.model, setup.data, optimizer=setup.optimizer)
    before = capture(setup.model, setup.optimizer)
    w = setup.widget(curvature=True, end_lr=10.0)
    assert w.curvature is None  # estimated in the sweep thread, before the first sweep
    w.run()
    w.wait()

    estimate = w.curvature
    assert estimate == expected
    assert estimate is not None
    assert estimate.applies
    assert estimate.lr_bound is not None
    line, text = w.plot.curvature.line, w.plot.curvature.text
    assert line.visible
    assert line in w.plot.figure.marks
    assert drawn(line.x).tolist() == [estimate.lr_bound, estimate.lr_bound]
    assert line.line_style == "dashed"
    assert text.visible
    assert list(text.text) == [estimate.label]
    assert drawn(text.x).tolist() == [estimate.lr_bound]
    assert w.controls.curvature_label.value == estimate.label
    assert w.controls.curvature_label.tooltip == estimate.explanation
    assert_restored(before, setup.model, setup.optimizer)  # the estimate and the sweep restore


def test_an_adam_without_state_shows_why_there_is_no_line(setup: Setup) -> None:
    adam = torch.optim.Adam(setup.model.parameters(), lr=1e-3)
    w = setup.widget(optimizer=adam, curvature={"estimate_second_moment": False})
    w.run()
    w.wait()

    estimate = w.curvature
    assert estimate is not None
    assert not estimate.applies
    assert "second-moment state" in estimate.explanation
    assert not w.plot.curvature.line.visible
    assert not w.plot.curvature.text.visible
    label = w.controls.curvature_label.value
    assert label.startswith("curvature: the bound does not apply")
    assert w.controls.curvature_label.layout.display is None


def test_a_failing_estimate_is_reported_and_the_sweep_still_runs(setup: Setup) -> None:
    calls: list[int] = []

    def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 1:  # the estimate's first loss: it fails, the sweep's losses do not
            raise RuntimeError("no curvature for you")
        return torch.nn.functional.cross_entropy(output, target)

    w = setup.widget(loss_fn=loss_fn, curvature=True)
    w.run()
    result = w.wait()
    assert isinstance(result, RangeTestResult)
    assert result.num_steps == 20
    assert w.curvature is None
    assert "curvature estimate failed: RuntimeError: no curvature for you" in (
        w.controls.curvature_label.value
    )


def test_show_curvature_draws_a_precomputed_estimate_and_none_removes_it() -> None:
    lrs = np.logspace(-6, 0, 61).tolist()
    w = LRWidget.from_result(RangeTestResult(lrs=lrs, losses=[1.0] * 61, beta=0.0))
    w.show_curvature(_estimate(3e-2))
    assert w.plot.curvature.line.visible
    assert drawn(w.plot.curvature.line.x).tolist() == [3e-2, 3e-2]
    assert w.plot.curvature.text.align == "end"  # right half: the label reads to the left
    w.show_curvature(_estimate(1e-5))
    assert w.plot.curvature.text.align == "start"
    w.show_curvature(_estimate(100.0))
    assert "off the plot's LR range" in w.controls.curvature_label.value.replace("&#x27;", "'")
    w.show_curvature(None)
    assert w.curvature is None
    assert not w.plot.curvature.line.visible
    assert w.controls.curvature_label.layout.display == "none"
    with pytest.raises(TypeError, match="CurvatureEstimate"):
        w.show_curvature(0.01)  # type: ignore[arg-type]
    w.close()


@pytest.mark.parametrize(
    ("curvature", "error", "match"),
    [
        ({"num_batchez": 4}, ValueError, "num_batchez"),
        ("yes", TypeError, "curvature must be True, False or a dict"),
    ],
)
def test_bad_curvature_options_are_named(
    setup: Setup, curvature: Any, error: type, match: str
) -> None:
    with pytest.raises(error, match=match):
        setup.widget(curvature=curvature)


def test_curvature_needs_a_model() -> None:
    saved = RangeTestResult(lrs=[1e-3, 1e-2], losses=[1.0, 0.5])
    with pytest.raises(TypeError, match="no model"):
        LRWidget(result=saved, curvature=True)
    assert math.isfinite(_estimate(1e-2).lambda_max)
