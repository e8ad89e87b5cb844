"""The bqplot figure of the LR widget: the loss curves, suggestion markers, selection and clicks.

The figure is built once; later updates only assign data to its marks, inside ``hold_sync()`` so
x and y travel in one message. Ownership follows the widget's threading rule: while a sweep runs,
the sweep thread owns the curve lines, the noise band, the hover points and the y scale
(:meth:`LossPlot.draw_curves`, :meth:`LossPlot.draw_band`); the main thread owns the x range,
suggestion markers and spread bars, selection marks, kept results, the curvature line, the LR
range and the click overlay. The overlays themselves are in :mod:`.overlays`, the click overlay
and the hover points in :mod:`.clicks`; the legend, drawn under the figure from the marks shown,
in :mod:`.legend` (either thread redraws it, under its lock). Colours come from
:mod:`lr_widget.plotting.style`, ticks and y ranges from :mod:`lr_widget.curves.axes`, as for
:meth:`lr_widget.results.protocol.SweepResult.plot`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import ipywidgets
import numpy as np
from numpy.typing import ArrayLike, NDArray

from lr_widget.curves.axes import YRange, decade_ticks, robust_y_range, union_of_ranges
from lr_widget.plotting.style import (
    BAND_COLOR,
    EMA_OPACITY,
    FIT_LABEL,
    LOSS_COLOR,
    RAW_COLOR,
    RAW_OPACITY,
    SELECTION_COLOR,
    VAL_COLOR,
    rule_style,
)
from lr_widget.results.curvature import CurvatureEstimate
from lr_widget.results.spread import Bump, NoiseBand, SuggestionSpread
from lr_widget.suggestions.curve import Suggestion
from lr_widget.suggestions.registry import DEFAULT_RULE, RULES
from lr_widget.widget._bqplot import bqplot
from lr_widget.widget.clicks import ClickLayer
from lr_widget.widget.curves import Curves
from lr_widget.widget.legend import LegendEntry, PlotLegend
from lr_widget.widget.overlays import (
    CurvatureMarks,
    KeptOverlays,
    NoiseBandMarks,
    RangeMarks,
    SpreadBars,
    empty_line,
    set_line,
)

FloatArray = NDArray[np.float64]

# The brush's SVG group while range mode is on (bqplot's own class), for browser tests.
LR_RANGE_CLASS = "brushintsel"


class LossPlot:
    """The figure: raw and smoothed loss against a log LR axis, suggestions, selection, clicks,
    and the overlays (noise band, kept results, curvature bound, spread bars, LR range).

    Parameters
    ----------
    start_lr, end_lr
        The initial x range.
    rules
        The suggestion rules that get a marker.
    """

    def __init__(self, start_lr: float, end_lr: float, rules: Sequence[str] = tuple(RULES)) -> None:
        self.x_scale = bqplot.LogScale()
        # A domain from the start: with none, bqplot maps every y to undefined until the first
        # curve arrives, and each hidden marker logged "transform: translate(863,undefined)".
        self.y_scale = bqplot.LinearScale(min=0.0, max=1.0)
        # The overlay and the vertical lines span the full height on a fixed 0..1 scale.
        self.unit_scale = bqplot.LinearScale(min=0.0, max=1.0)
        scales = {"x": self.x_scale, "y": self.y_scale}
        self.raw_line = empty_line(scales, RAW_COLOR, "loss (raw)", width=1, opacity=RAW_OPACITY)
        self.loss_line = empty_line(scales, LOSS_COLOR, "loss (smoothed)", width=2)
        self.raw_val_line = empty_line(
            scales, RAW_COLOR, "val loss (raw)", width=1, opacity=RAW_OPACITY
        )
        self.val_line = empty_line(scales, VAL_COLOR, "val loss (smoothed)", width=2)
        # Once a run has ended: the zero-phase fit the rules read, over the EMA (which lags).
        self.fit_line = empty_line(scales, LOSS_COLOR, FIT_LABEL, width=2.5)
        for line in (self.raw_val_line, self.val_line, self.fit_line):
            line.visible = False
        self.suggestion_marks = {rule: _suggestion_mark(scales, rule) for rule in rules}
        # The answer: the default rule's marker is labelled on the plot, the others are one
        # toggle away (all_rules).
        self.answer_text = bqplot.Label(
            x=[1.0],
            y=[0.0],
            scales=scales,
            text=np.array([""], dtype=str),
            colors=[rule_style(DEFAULT_RULE).color],
            default_size=13,
            font_unit="px",
            font_weight="bold",
            align="start",
            x_offset=10,
            y_offset=-10,
            visible=False,
        )
        self.all_rules = False
        self.legend = PlotLegend()
        self.band = NoiseBandMarks(scales, BAND_COLOR)
        self.kept = KeptOverlays(scales)
        self.curvature = CurvatureMarks(self.x_scale, self.unit_scale)
        self.spread_bars = SpreadBars(scales, {rule: rule_style(rule).color for rule in rules})
        self.ranges = RangeMarks(self.x_scale, self.unit_scale)
        self.selection_line = bqplot.Lines(
            x=[1.0, 1.0],
            y=[0.0, 1.0],
            scales={"x": self.x_scale, "y": self.unit_scale},
            colors=[SELECTION_COLOR],
            line_style="dashed",
            stroke_width=1.5,
            visible=False,
        )
        # A ring, not a dot: a suggestion marker under the selection stays visible.
        self.selection_dot = bqplot.Scatter(
            x=[1.0],
            y=[0.0],
            scales=scales,
            colors=[SELECTION_COLOR],
            fill=False,
            stroke_width=2,
            default_size=180,
            labels=["selected"],
            visible=False,
        )
        self.clicks = ClickLayer(scales, self.unit_scale, start_lr, end_lr)
        self.overlay, self.hover_points = self.clicks.overlay, self.clicks.hover_points
        self.tooltip = self.clicks.tooltip
        # The y range of each thing drawn on the loss scale; the scale shows their union.
        # Fixed keys: the sweep thread reads them while the main thread may replace "kept".
        self._y_ranges: dict[str, YRange | None] = {"curves": None, "band": None, "kept": None}
        self._retired: list[Any] = []  # marks taken off the figure, closed with it
        self.x_axis = bqplot.Axis(scale=self.x_scale, label="learning rate", tick_format=".0e")
        self.y_axis = bqplot.Axis(scale=self.y_scale, side="left", label="loss", tick_format=".3~g")
        self.figure = bqplot.Figure(
            marks=self._marks(),
            axes=[self.x_axis, self.y_axis],
            animation_duration=0,
            fig_margin={"top": 20, "bottom": 50, "left": 65, "right": 40},
            layout=ipywidgets.Layout(width="100%", height="380px"),
        )
        self.set_lr_range(start_lr, end_lr)
        self._redraw_legend()

    def _marks(self) -> list[Any]:
        """Every mark, bottom to top."""
        return [
            *self.ranges.marks(),
            *self.kept.marks_below(),
            *self.band.marks_below(),
            self.raw_line,
            self.raw_val_line,
            *self.kept.marks_above(),
            *self.band.marks_above(),
            self.loss_line,
            self.val_line,
            self.fit_line,
            *self.curvature.marks(),
            *self.spread_bars.marks(),
            *self.suggestion_marks.values(),
            self.answer_text,
            self.selection_line,
            self.selection_dot,
            self.overlay,  # above the curves: receives every click between points
            self.hover_points,  # last: the only mark above the overlay
        ]

    # -- main thread ------------------------------------------------------------------------
    def on_click(self, callback: Callable[[float], None]) -> None:
        """Call ``callback(lr)`` for each click on the plot area (see :mod:`.clicks`)."""
        self.clicks.on_click(callback)

    def on_range_drag(self, callback: Callable[[float, float], None]) -> None:
        """Call ``callback(low, high)`` whenever the brush reports a dragged interval."""

        def selected(change: Mapping[str, Any]) -> None:
            values = change["new"]
            if values is None or len(values) != 2:
                return  # the brush was cleared: keep the range
            low, high = sorted(float(value) for value in values)
            if math.isfinite(low) and math.isfinite(high) and 0 < low < high:
                callback(low, high)

        self.ranges.brush.observe(selected, names="selected")

    def on_range_released(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when a drag with the brush ends (the mouse is released)."""

        def released(change: Mapping[str, Any]) -> None:
            if not change["new"]:
                callback()

        self.ranges.brush.observe(released, names="brushing")

    @property
    def range_dragging(self) -> bool:
        """Whether a drag with the brush is under way in the browser."""
        return bool(self.ranges.brush.brushing)

    def set_range_mode(self, on: bool) -> None:
        """Drag to select an LR range (``True``), or click to select an LR (``False``)."""
        self.figure.interaction = self.ranges.brush if on else None

    @property
    def range_mode(self) -> bool:
        """Whether dragging selects a range (the brush is the figure's interaction)."""
        return self.figure.interaction is self.ranges.brush

    def set_lr_range(self, low: float, high: float) -> None:
        """Fix the x axis to ``[low, high]`` with decade ticks (never while a sweep draws)."""
        low, high = float(low), float(high)
        if (self.x_scale.min, self.x_scale.max) == (low, high):
            return  # set at each sweep's start and end: skip the ticks and traits unchanged
        with self.x_scale.hold_sync():
            self.x_scale.min, self.x_scale.max = low, high
        self.x_axis.tick_values = decade_ticks(low, high)
        self.clicks.set_extent(low, high)

    @property
    def lr_range_shown(self) -> tuple[float, float]:
        """The x axis's ``(min, max)``."""
        return float(self.x_scale.min), float(self.x_scale.max)

    def set_primary_label(self, label: str | None) -> None:
        """Name the main result in the legend (``None``: the plain "loss" names)."""
        prefix = "" if label is None else f"{label}: "
        self.raw_line.labels = [f"{prefix}loss (raw)"]
        self.loss_line.labels = [f"{prefix}loss (smoothed)"]
        self.band.label_prefix = prefix
        self._redraw_legend()

    def show_suggestions(
        self, suggestions: Mapping[str, Suggestion], *, all_rules: bool | None = None
    ) -> None:
        """Mark the default rule's suggestion as *the* answer: a larger marker labelled
        "suggested 3.1e-03" on the plot; every other rule's marker only with ``all_rules``
        (``None``: as before). Rules without an answer are hidden."""
        if all_rules is not None:
            self.all_rules = all_rules
        for rule, mark in self.suggestion_marks.items():
            suggestion = suggestions.get(rule)
            shown = (
                suggestion is not None
                and suggestion.lr is not None
                and suggestion.loss is not None
                and (self.all_rules or rule == DEFAULT_RULE)
            )
            if suggestion is None or not shown:
                if mark.visible:  # each sweep hides them at its start
                    mark.visible = False
                continue
            with mark.hold_sync():  # one message, not one per trait
                mark.x, mark.y = [suggestion.lr], [suggestion.loss]
                mark.labels = [_marker_label(suggestion)]
                mark.visible = True
        self._show_answer(suggestions.get(DEFAULT_RULE))
        self._redraw_legend()

    def _show_answer(self, answer: Suggestion | None) -> None:
        """Label the default suggestion's marker "suggested 3.1e-03", reading away from the
        nearer edge of the plot."""
        if answer is None or answer.lr is None or answer.loss is None:
            if self.answer_text.visible:
                self.answer_text.visible = False
            return
        low, high = self.lr_range_shown
        share = (math.log10(answer.lr) - math.log10(low)) / (math.log10(high) - math.log10(low))
        with self.answer_text.hold_sync():
            self.answer_text.x, self.answer_text.y = [answer.lr], [answer.loss]
            self.answer_text.text = np.array([f"suggested {answer.lr:.1e}"], dtype=str)
            self.answer_text.align = "end" if share > 0.6 else "start"
            self.answer_text.x_offset = -10 if share > 0.6 else 10
            self.answer_text.visible = True

    @property
    def answer_shown(self) -> str | None:
        """The text labelling the default suggestion on the plot, if shown."""
        return str(self.answer_text.text[0]) if self.answer_text.visible else None

    def show_spreads(
        self, spreads: Mapping[str, SuggestionSpread], suggestions: Mapping[str, Suggestion]
    ) -> None:
        """A horizontal bar over each rule's range of picks across runs (repeated results)."""
        self.spread_bars.show(spreads, suggestions)

    def hide_suggestions(self) -> None:
        """Hide every suggestion marker and spread bar (a new sweep is starting)."""
        self.show_suggestions({})
        self.show_spreads({}, {})

    def show_selection(self, lr: float | None, loss: float | None) -> None:
        """Draw the selected LR as a dashed vertical line, with a dot at ``loss`` if known."""
        if lr is None:
            self.selection_line.visible = self.selection_dot.visible = False
            return
        with self.selection_line.hold_sync():
            self.selection_line.x = [lr, lr]
            self.selection_line.visible = True
        visible = loss is not None and math.isfinite(loss)
        with self.selection_dot.hold_sync():
            if visible:
                self.selection_dot.x, self.selection_dot.y = [lr], [loss]
            self.selection_dot.visible = visible

    def show_curvature(self, estimate: CurvatureEstimate | None) -> None:
        """Draw the curvature bound of ``estimate`` (hidden if it has none, or ``None``)."""
        self.curvature.show(estimate, self.lr_range_shown)
        self._redraw_legend()

    def show_range(self, lr_range: tuple[float, float] | None) -> None:
        """Shade the selected LR range (``None`` hides it)."""
        self.ranges.show(lr_range)

    def show_kept(self, bands: Mapping[str, NoiseBand], *, fit_y: bool) -> None:
        """Draw exactly these kept results (label to band); refit y unless a sweep owns it."""
        before = self.kept.labels
        self._retired.extend(self.kept.sync(bands))
        if self.kept.labels != before:
            self.figure.marks = self._marks()
        self._y_ranges["kept"] = self.kept.y_range
        if fit_y:
            self._fit_y()
        self._redraw_legend()

    def close(self) -> None:
        """Close the widgets the figure may no longer reference (the brush, removed marks)."""
        for widget in [self.ranges.brush, *self._retired]:
            widget.close()
        self._retired = []

    # -- owner of the curves: the sweep thread while sweeping, else the main thread ----------
    def draw_curves(self, curves: Curves) -> None:
        """Draw the loss curves and fit the y range to them (and to the band and kept ones)."""
        has_val = curves.val_losses is not None and curves.smoothed_val is not None
        with _held(*self._single_run_lines()):  # one message per line, style and data together
            set_line(self.raw_line, curves.lrs, curves.losses)
            set_line(self.loss_line, curves.lrs, curves.smoothed)
            if curves.val_losses is not None and curves.smoothed_val is not None:
                set_line(self.raw_val_line, curves.lrs, curves.val_losses)
                set_line(self.val_line, curves.lrs, curves.smoothed_val)
            for line in (self.raw_val_line, self.val_line):
                if line.visible != has_val:
                    line.visible = has_val
            self._draw_fit(curves, has_val=curves.val_losses is not None)
        self._draw_points_and_fit_y(curves)

    def draw_fit(self, curves: Curves) -> None:
        """Draw (or hide) the lag-free fit of the curves already drawn, with the hover points
        on the main series and the y range refit: the end of a sweep adds only this."""
        with _held(*self._single_run_lines()):
            self._draw_fit(curves, has_val=curves.val_losses is not None)
        self._draw_points_and_fit_y(curves)

    def _draw_points_and_fit_y(self, curves: Curves) -> None:
        """After the lines: the hover points on the main series, and the y range refit."""
        self.draw_points(curves.lrs, curves.curve)
        self._y_ranges["curves"] = robust_y_range(curves.curve, curves.raw)
        self._fit_y()
        self._redraw_legend()

    def _draw_fit(self, curves: Curves, has_val: bool) -> None:
        """The lag-free fit over the EMA of the series it fits (hidden while a run grows); the
        EMA it replaces as the main curve fades. Styles change only when the fit comes or goes.
        Callers hold the lines' syncs, so that a line's data and style go in one message."""
        fitted = curves.fitted is not None
        ema = self.val_line if has_val else self.loss_line
        if curves.fitted is not None:
            set_line(self.fit_line, curves.lrs, curves.fitted)
        if self.fit_line.visible != fitted:
            if fitted:
                self.fit_line.colors = [VAL_COLOR if has_val else LOSS_COLOR]
                self.fit_line.labels = [f"val {FIT_LABEL}" if has_val else FIT_LABEL]
            else:
                set_line(self.fit_line, np.zeros(0), np.zeros(0))
            self.fit_line.visible = fitted
        for line in (self.loss_line, self.val_line):
            faded = fitted and line is ema
            if (line.opacities == [EMA_OPACITY]) != faded:
                line.opacities = [EMA_OPACITY if faded else 1.0]
                line.line_style = "dashed" if faded else "solid"

    def clear_curves(self) -> None:
        """Empty the single-run lines (a repeated result shows its median instead)."""
        empty = np.zeros(0)
        with _held(*self._single_run_lines()):
            for line in (self.raw_line, self.loss_line, self.raw_val_line, self.val_line):
                set_line(line, empty, empty)
            self._draw_fit(Curves.empty(), has_val=False)
            self.raw_val_line.visible = False
            self.val_line.visible = False
        self._y_ranges["curves"] = None
        self._redraw_legend()

    def _single_run_lines(self) -> tuple[Any, ...]:
        """The lines of a single run: raw and smoothed loss (and validation loss), the fit."""
        return (self.raw_line, self.loss_line, self.raw_val_line, self.val_line, self.fit_line)

    def draw_band(
        self,
        band: NoiseBand | None,
        bumps: Sequence[Bump] = (),
        runs: int = 0,
        smoothed: tuple[ArrayLike, ArrayLike] | None = None,
    ) -> None:
        """Draw the noise band of ``runs`` repeated runs' fits (``None`` hides it) with the
        median of their moving averages (``smoothed``: ``(lrs, values)``) faded, and refit y."""
        self.band.draw(band, bumps, runs, smoothed)
        self._y_ranges["band"] = self.band.y_range
        self._fit_y()
        self._redraw_legend()

    def _redraw_legend(self) -> None:
        """Show in the legend what is drawn now (either thread: the legend holds a lock)."""
        self.legend.show(self._legend_entries)

    def _legend_entries(self) -> list[LegendEntry]:
        """Every line drawn with data, then the suggestion markers shown; the curve the rules
        read (the fit) and the default suggestion in bold."""
        lines = (
            self.raw_line, self.loss_line, self.raw_val_line, self.val_line, self.fit_line,
            self.band.smoothed, self.band.median, *self.kept.marks_above(), self.curvature.line,
        )  # fmt: skip
        entries = [
            LegendEntry(
                str(line.labels[0]),
                str(line.colors[0]),
                dashed=line.line_style == "dashed",
                opacity=float(line.opacities[0]) if len(line.opacities) else 1.0,
                width=float(line.stroke_width),
                bold=line is self.fit_line or line is self.band.median,
            )
            for line in lines
            if line.visible and len(line.x)
        ]
        entries += [
            LegendEntry(str(mark.labels[0]), str(mark.colors[0]), "marker",
                        bold=rule == DEFAULT_RULE)
            for rule, mark in self.suggestion_marks.items()
            if mark.visible
        ]  # fmt: skip
        return entries

    def draw_points(self, lrs: FloatArray, curve: FloatArray) -> None:
        """One hover point per recorded LR where the shown curve is finite."""
        self.clicks.draw_points(lrs, curve)

    def _fit_y(self) -> None:
        y_range = union_of_ranges(list(self._y_ranges.values()))
        if y_range is not None:
            with self.y_scale.hold_sync():
                self.y_scale.min, self.y_scale.max = y_range


@contextmanager
def _held(*widgets: Any) -> Iterator[None]:
    """Hold the sync of every widget: on leaving, each sends one message with all its changes
    (none if unchanged), in the order given."""
    with ExitStack() as stack:
        for widget in reversed(widgets):  # the first entered is the last to leave, and send
            stack.enter_context(widget.hold_sync())
        yield


def _marker_label(suggestion: Suggestion) -> str:
    """The legend's name of a suggestion's marker; the default's is *the* suggestion."""
    if suggestion.rule == DEFAULT_RULE:
        return f"suggested {suggestion.lr:.1e} ({suggestion.rule})"
    return f"{suggestion.rule} {suggestion.lr:.1e}"


def _suggestion_mark(scales: dict[str, Any], rule: str) -> Any:
    style = rule_style(rule)
    return bqplot.Scatter(
        x=[1.0],
        y=[0.0],
        scales=scales,
        colors=[style.color],
        marker=style.bqplot_marker,
        default_size=240 if rule == DEFAULT_RULE else 110,
        stroke="white",
        labels=[rule],
        visible=False,
        display_legend=False,
    )
