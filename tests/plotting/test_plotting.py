"""``result.plot()`` and the command line's picture: matplotlib, with the widget's colours,
ticks and y range, for single and repeated results, robust to blow-ups and NaN."""

from __future__ import annotations

import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from lr_widget.curves.axes import decade_ticks, robust_y_range
from lr_widget.plotting.static import save_picture
from lr_widget.plotting.style import (
    BAND_COLOR,
    EMA_OPACITY,
    FIT_LABEL,
    LOSS_COLOR,
    RAW_COLOR,
    SMOOTHED_MEDIAN_LABEL,
    VAL_COLOR,
    median_fit_label,
    rule_style,
)
from lr_widget.results.range_test import RangeTestResult
from lr_widget.results.repeated import RepeatedRangeTest
from lr_widget.suggestions.registry import DEFAULT_RULE

matplotlib.use("Agg")


def _result(num_steps: int = 100) -> RangeTestResult:
    """A typical curve from 1e-7 to 10: flat at 1.2, a dip to 0.5, then a blow-up."""
    lrs = np.logspace(-7, 1, num_steps)
    x = np.log10(lrs)
    curve = 1.2 - 0.7 * np.exp(-(((x + 1) / 1.5) ** 2)) + np.where(x > -0.5, 30 * (x + 0.5) ** 3, 0)
    losses = curve + 0.05 * np.sin(np.arange(num_steps) * 1.7)
    return RangeTestResult(lrs=lrs.tolist(), losses=losses.tolist(), beta=0.9)


def _axes() -> Axes:
    return Figure().add_subplot()


def _line(ax: Axes, label: str) -> Line2D:
    (line,) = [line for line in ax.get_lines() if line.get_label() == label]
    return line


def test_a_single_run_draws_raw_ema_and_lag_free_loss_in_the_widgets_colours() -> None:
    result = _result()
    ax = result.plot(_axes())
    raw, ema, fit = _line(ax, "loss (raw)"), _line(ax, "loss (smoothed)"), _line(ax, FIT_LABEL)
    np.testing.assert_array_equal(raw.get_ydata(), result.losses)
    np.testing.assert_allclose(ema.get_ydata(), result.smoothed_losses)
    np.testing.assert_allclose(fit.get_ydata(), result.lag_free_curve)  # NaN past the blow-up
    assert np.isnan(result.lag_free_curve[-1])  # the test can tell the two apart
    assert to_hex(raw.get_color()) == RAW_COLOR
    assert to_hex(ema.get_color()) == to_hex(fit.get_color()) == LOSS_COLOR
    assert ema.get_alpha() == EMA_OPACITY  # the EMA faded: the fit is the curve the rules read
    assert ema.get_linestyle() == "--"
    assert fit.get_alpha() is None
    assert (ax.get_xscale(), ax.get_xlabel(), ax.get_ylabel()) == ("log", "learning rate", "loss")


def test_axes_use_the_widgets_decade_ticks_and_robust_y_range() -> None:
    result = _result()
    ax = result.plot(_axes())
    assert list(ax.get_xticks()) == decade_ticks(result.lrs[0], result.lrs[-1])
    assert ax.get_xlim() == pytest.approx((1e-7, 10.0))
    expected = robust_y_range(result.smoothed_losses, result.losses)
    assert ax.get_ylim() == pytest.approx(expected)
    assert ax.get_ylim()[1] < 3  # the blow-up to 30 does not squash the dip


def _markers(ax: Axes) -> dict[str, PathCollection]:
    return {
        collection.get_label(): collection
        for collection in ax.collections
        if isinstance(collection, PathCollection)
    }


def test_the_default_is_marked_and_labelled_as_the_answer_and_the_rest_on_request() -> None:
    result = _result()
    answer = result.suggestion
    assert answer.lr is not None
    ax = result.plot(_axes())
    markers = _markers(ax)
    assert list(markers) == [f"suggested {answer.lr:.1e} ({DEFAULT_RULE})"]
    assert [text.get_text() for text in ax.texts] == [f"suggested {answer.lr:.1e}"]

    answered = {rule: s for rule, s in result.suggestions().items() if s.lr is not None}
    assert len(answered) > 1  # the test can fail
    markers = _markers(result.plot(_axes(), all_rules=True))
    for rule, suggestion in answered.items():
        label = (
            f"suggested {suggestion.lr:.1e} ({rule})"
            if rule == DEFAULT_RULE
            else f"{rule} {suggestion.lr:.1e}"
        )
        mark = markers[label]
        assert mark.get_offsets().tolist() == [[suggestion.lr, suggestion.loss]]
        assert to_hex(mark.get_facecolor()[0]) == rule_style(rule).color
    assert len(markers) == len(answered)


def test_the_legend_is_outside_the_plot_area() -> None:
    figure = Figure(figsize=(10.0, 4.5), layout="constrained")
    ax = _result().plot(figure.add_subplot())
    figure.draw_without_rendering()  # the constrained layout, as a save would place it
    legend = ax.get_legend().get_window_extent()
    plot_area = ax.get_window_extent()
    assert legend.x0 >= plot_area.x1  # beside the plot, not over it
    assert legend.x1 <= figure.bbox.x1  # and inside the figure


def test_the_validation_curve_is_drawn_and_fits_the_y_range() -> None:
    base = _result(60)
    val = [loss + 0.3 for loss in base.losses]
    result = RangeTestResult(lrs=base.lrs, losses=base.losses, val_losses=val, beta=0.9)
    ax = result.plot(_axes())
    smoothed_val = _line(ax, "val loss (smoothed)")
    assert to_hex(smoothed_val.get_color()) == VAL_COLOR
    val_fit = _line(ax, f"val {FIT_LABEL}")  # the rules read the validation curve's fit
    np.testing.assert_allclose(val_fit.get_ydata(), result.lag_free_curve)
    assert to_hex(val_fit.get_color()) == VAL_COLOR
    assert _line(ax, "loss (smoothed)").get_alpha() is None  # the training EMA is not replaced
    assert FIT_LABEL not in [line.get_label() for line in ax.get_lines()]
    assert ax.get_ylim() == pytest.approx(robust_y_range(result.curve, val))


def test_a_repeated_result_draws_the_band_of_its_fits_around_their_median() -> None:
    runs = [
        RangeTestResult(lrs=_result().lrs, losses=[v * scale for v in _result().losses], beta=0.9)
        for scale in (0.95, 1.0, 1.05)
    ]
    repeated = RepeatedRangeTest(runs)
    ax = repeated.plot(_axes())
    band = repeated.band()  # of the runs' lag-free fits, the curves the rules read
    fit = _line(ax, median_fit_label(3))
    np.testing.assert_allclose(fit.get_ydata(), band.median)
    np.testing.assert_allclose(fit.get_ydata(), repeated.lag_free_curve)
    assert to_hex(fit.get_color()) == BAND_COLOR
    smoothed = _line(ax, SMOOTHED_MEDIAN_LABEL)  # the lagging EMA, faded
    np.testing.assert_allclose(smoothed.get_ydata(), repeated.smoothed_band().median)
    assert (smoothed.get_alpha(), smoothed.get_linestyle()) == (EMA_OPACITY, "--")
    (fill,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert fill.get_label() == "spread of 3 runs"
    vertices = fill.get_paths()[0].vertices
    assert vertices[:, 1].min() == pytest.approx(float(np.nanmin(band.low)))
    assert vertices[:, 1].max() == pytest.approx(float(np.nanmax(band.high)))


def test_a_repeated_results_fit_is_in_view_and_its_pick_sits_on_it() -> None:
    """The bold fit runs ahead of the lagging median EMA (the demo's by half a decade and more):
    the y range is the fit's and the default's marker sits on the fit, not on the dashed EMA."""
    lrs = np.logspace(-6, 0, 80)
    runs = [
        RangeTestResult(
            lrs=lrs.tolist(),
            losses=(
                1.2
                - np.tanh(2 * (np.log10(lrs) + 3.5)) * 0.5
                + 0.6 * (lrs > 0.3) * 10 * lrs
                + 0.01 * shift
            ).tolist(),
            beta=0.98,
        )
        for shift in range(3)
    ]
    repeated = RepeatedRangeTest(runs)
    fit = repeated.lag_free_curve
    lagging = repeated.smoothed_band().median
    assert np.nanmin(fit) < np.nanmin(lagging) - 0.1  # the lag the test is about
    ax = repeated.plot(_axes())
    low, high = ax.get_ylim()
    assert low <= np.nanmin(fit) < high
    suggestion = repeated.suggestion
    assert suggestion.lr is not None
    assert suggestion.index is not None
    assert suggestion.loss == pytest.approx(fit[suggestion.index])
    (mark,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert mark.get_offsets().tolist() == [[suggestion.lr, suggestion.loss]]


def test_non_finite_losses_leave_gaps() -> None:
    result = _result(40)
    losses = list(result.losses)
    losses[10], losses[-1] = math.nan, math.inf
    broken = RangeTestResult(lrs=result.lrs, losses=losses, beta=0.0)
    ax = broken.plot(_axes())
    raw = np.asarray(_line(ax, "loss (raw)").get_ydata())
    assert math.isnan(raw[10])
    assert math.isnan(raw[-1])
    assert np.isfinite(ax.get_ylim()).all()


@pytest.mark.parametrize(
    "result",
    [RangeTestResult(lrs=[], losses=[]), RangeTestResult(lrs=[1e-3, 1e-2], losses=[math.nan] * 2)],
)
def test_empty_and_all_nan_results_still_give_a_picture(result: RangeTestResult) -> None:
    ax = result.plot(_axes())
    assert ax.get_xscale() == "log"


def test_plot_without_axes_draws_on_a_new_pyplot_figure_with_a_title() -> None:
    import matplotlib.pyplot as plt

    ax = _result().plot(title="my sweep")
    try:
        assert ax.get_title() == "my sweep"
        assert ax.figure in [plt.figure(number) for number in plt.get_fignums()]
    finally:
        plt.close("all")


def test_saved_svg_is_valid_deterministic_and_labelled(tmp_path: Path) -> None:
    result = _result()
    first = save_picture(result, tmp_path / "a.svg", title="LR range test")
    second = save_picture(result, tmp_path / "b.svg", title="LR range test")
    assert first.read_bytes() == second.read_bytes()  # no date, fixed ids
    root = ET.parse(first).getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    texts = "".join(root.itertext())
    assert "LR range test" in texts
    assert "learning rate" in texts
    assert f"suggested {result.suggested_lr:.1e} ({DEFAULT_RULE})" in texts


def test_saved_png_is_a_png(tmp_path: Path) -> None:
    path = save_picture(_result(), tmp_path / "curve.png")
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_without_matplotlib_plot_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ModuleNotFoundError, match="needs matplotlib: pip install matplotlib"):
        _result().plot()
