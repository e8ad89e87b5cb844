"""The bqplot figure of the LR widget: the loss curves, suggestion markers, selection and clicks.

The figure is built once; later updates only assign data to its marks, inside ``hold_sync()`` so
x and y travel in one message. Ownership follows the widget's threading rule: while a sweep runs,
the sweep thread owns the curve lines, the hover points and the y scale
(:meth:`LossPlot.draw_curves`); the main thread owns the x range, suggestion markers, selection
marks and the click overlay.

The click overlay is a transparent 1x1 PNG shown as a ``bqplot.Image`` spanning the plot area: it
is the only bqplot mark whose click reports *where* the click landed (``click_x`` already
inverted through the log x scale). It lies above the curves and markers, so it also takes their
hover events. Only the hover points, a faint ``Scatter`` of the recorded points on the smoothed
curve, lie above it (last in ``Figure.marks``): hovering one shows a tooltip with its LR and loss,
clicking one selects exactly that point, and a click between points falls through to the overlay.
"""

from __future__ import annotations

import math
import struct
import warnings
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets
import numpy as np
from numpy.typing import ArrayLike, NDArray

from lr_widget.result import RangeTestResult
from lr_widget.smoothing import debiased_ema
from lr_widget.suggestions import RULES, Suggestion

with warnings.catch_warnings():
    # bqscales (imported by bqplot) builds a trait with constructor metadata, which traitlets
    # deprecates; the warning fires once at import and would break any `-W error` test suite
    # that imports lr_widget.widget.
    warnings.filterwarnings(
        "ignore", message=r"metadata \{'args'", category=DeprecationWarning, module="bqscales"
    )
    import bqplot

__all__ = [
    "POINT_TOOLTIP",
    "RULE_STYLES",
    "TOOLTIP_CLASS",
    "TRANSPARENT_PNG",
    "Curves",
    "LossPlot",
    "decade_ticks",
    "nearest_index",
    "robust_y_range",
]

FloatArray = NDArray[np.float64]


def _transparent_png() -> bytes:
    """A valid 1x1 fully transparent RGBA PNG (67 bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)  # 1x1, 8-bit RGBA
    pixels = zlib.compress(b"\x00\x00\x00\x00\x00")  # filter byte + one transparent pixel
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


TRANSPARENT_PNG = _transparent_png()

# Colour and marker of each rule's suggestion marker (and of its legend entry).
RULE_STYLES: dict[str, tuple[str, str]] = {
    "steep": ("#2ca02c", "triangle-down"),
    "valley": ("#d62728", "diamond"),
    "minimum": ("#9467bd", "square"),
    "slide": ("#ff7f0e", "cross"),
}
_FALLBACK_STYLE = ("#8c564b", "circle")
_LOSS_COLOR, _VAL_COLOR, _RAW_COLOR = "#1f77b4", "#ff7f0e", "#757575"
_SELECTION_COLOR = "#000000"

# The hover points' tooltip: (field, label, d3 format) per row, and its DOM class.
TOOLTIP_CLASS = "lr-widget-tooltip"
POINT_TOOLTIP: tuple[tuple[str, str, str], ...] = (("x", "lr", ".2e"), ("y", "loss", ".4g"))
# Small faint dots: they mark where a hover or click hits a point without hiding the curve. The
# wide transparent stroke widens the hit area (SVG hit-tests a transparent stroke) to ~10 px.
_POINT_SIZE, _POINT_OPACITY, _POINT_HIT_WIDTH = 12, 0.2, 6.0

# Headroom above the highest pre-minimum loss, as a share of its drop to the minimum: enough to
# see the divergence start, not so much that an exploding tail flattens the interesting part.
_Y_HEADROOM = 0.5
_Y_PADDING = 0.05


def decade_ticks(low: float, high: float) -> list[float]:
    """Readable log-axis ticks: the powers of ten in ``[low, high]``, thinned to at most ~10.

    With fewer than two powers of ten in range, the ends are used as well.

    >>> decade_ticks(1e-7, 10.0)[:3]
    [1e-07, 1e-06, 1e-05]
    >>> decade_ticks(2e-4, 8e-4)
    [0.0002, 0.0008]
    """
    first, last = math.ceil(math.log10(low) - 1e-9), math.floor(math.log10(high) + 1e-9)
    exponents = list(range(first, last + 1))
    stride = max(1, math.ceil(len(exponents) / 10))
    ticks = [float(10.0**exponent) for exponent in exponents[::stride]]
    if len(ticks) < 2:
        ticks = sorted({float(low), *ticks, float(high)})
    return ticks


def nearest_index(lrs: ArrayLike, lr: float) -> int:
    """Index of the recorded LR nearest to ``lr`` in log space (ties go to the smaller LR).

    >>> nearest_index([1e-4, 1e-3, 1e-2], 4e-4)  # log-nearer to 1e-3, linearly nearer to 1e-4
    1
    """
    values = np.asarray(lrs, dtype=np.float64)
    if values.size == 0:
        raise ValueError("no recorded LRs to choose from")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
    return int(np.argmin(np.abs(np.log10(values) - math.log10(lr))))


def robust_y_range(curve: ArrayLike, raw: ArrayLike = ()) -> tuple[float, float] | None:
    """A y range that keeps the useful part of a loss curve readable when the loss explodes.

    The bottom is the lowest finite point of ``curve`` (or of ``raw``'s 2nd percentile, if lower).
    The top is the highest finite point, capped at the highest ``curve`` value before its
    minimum plus half its drop to the minimum: a diverging tail leaves the plot instead of
    squashing the curve. Both ends get 5% padding. ``None`` if nothing is finite.

    >>> robust_y_range([2.0, 1.0, 1.5, 1e30, float("inf")])
    (0.925, 2.575)
    """
    smooth = _finite(curve)
    noisy = _finite(raw)
    values = smooth if smooth.size else noisy
    if values.size == 0:
        return None
    low = float(values.min())
    if noisy.size:
        low = min(low, float(np.percentile(noisy, 2)))
    lowest = int(np.argmin(values))
    before_minimum = float(values[: lowest + 1].max())
    if before_minimum > low:
        cap = before_minimum + _Y_HEADROOM * (before_minimum - low)
        high = min(float(values.max()), cap)
        if noisy.size:
            high = max(high, min(float(np.percentile(noisy, 98)), cap))
    else:
        # No drop to measure headroom from (the loss only rises): cap at twice the 90th
        # percentile's distance from the bottom, so a blow-up at the end stays off the plot.
        q90 = float(np.percentile(values, 90))
        high = (
            float(values.max()) if q90 <= low else min(float(values.max()), low + 2 * (q90 - low))
        )
    span = high - low
    pad = _Y_PADDING * span if span > 0 else max(abs(low) * _Y_PADDING, 1e-12)
    return low - pad, high + pad


def _finite(values: ArrayLike) -> FloatArray:
    array = np.asarray(values, dtype=np.float64).ravel()
    return array[np.isfinite(array)]


def _nan_for_inf(values: ArrayLike) -> FloatArray:
    """Non-finite values as NaN: bqplot skips NaN points, but draws inf as a spike."""
    array = np.array(values, dtype=np.float64)
    array[~np.isfinite(array)] = np.nan
    return array


@dataclass(frozen=True)
class Curves:
    """The series one drawing needs, derived from a result and a smoothing ``beta``."""

    lrs: FloatArray
    losses: FloatArray
    smoothed: FloatArray
    val_losses: FloatArray | None = None
    smoothed_val: FloatArray | None = None

    @classmethod
    def of(cls, result: RangeTestResult, beta: float) -> Curves:
        """Snapshot ``result`` smoothed with ``beta``.

        Safe to call from another thread while the engine appends: it reads the common prefix.
        """
        count = min(len(result.lrs), len(result.losses))
        if result.val_losses is not None:
            count = min(count, len(result.val_losses))
        losses = np.array(result.losses[:count], dtype=np.float64)
        val = None
        if result.val_losses is not None:
            val = np.array(result.val_losses[:count], dtype=np.float64)
        return cls(
            lrs=np.array(result.lrs[:count], dtype=np.float64),
            losses=losses,
            smoothed=debiased_ema(losses, beta),
            val_losses=val,
            smoothed_val=None if val is None else debiased_ema(val, beta),
        )

    @property
    def curve(self) -> FloatArray:
        """The series the suggestions read (smoothed validation loss if measured)."""
        return self.smoothed if self.smoothed_val is None else self.smoothed_val

    @property
    def raw(self) -> FloatArray:
        """The raw series behind :attr:`curve`."""
        return self.losses if self.val_losses is None else self.val_losses


class LossPlot:
    """The figure: raw and smoothed loss against a log LR axis, suggestions, selection, clicks.

    Parameters
    ----------
    start_lr, end_lr
        The initial x range.
    rules
        The suggestion rules that get a marker.
    """

    def __init__(self, start_lr: float, end_lr: float, rules: Sequence[str] = tuple(RULES)) -> None:
        self.x_scale = bqplot.LogScale()
        self.y_scale = bqplot.LinearScale()
        # The overlay and the selection line span the full height on a fixed 0..1 scale.
        self.unit_scale = bqplot.LinearScale(min=0.0, max=1.0)
        scales = {"x": self.x_scale, "y": self.y_scale}
        self.raw_line = _line(scales, _RAW_COLOR, "loss (raw)", width=1, opacity=0.6)
        self.loss_line = _line(scales, _LOSS_COLOR, "loss (smoothed)", width=2)
        self.raw_val_line = _line(scales, _RAW_COLOR, "val loss (raw)", width=1, opacity=0.6)
        self.val_line = _line(scales, _VAL_COLOR, "val loss (smoothed)", width=2)
        for line in (self.raw_val_line, self.val_line):
            line.visible = line.display_legend = False
        self.suggestion_marks = {rule: _suggestion_mark(scales, rule) for rule in rules}
        self.selection_line = bqplot.Lines(
            x=[1.0, 1.0],
            y=[0.0, 1.0],
            scales={"x": self.x_scale, "y": self.unit_scale},
            colors=[_SELECTION_COLOR],
            line_style="dashed",
            stroke_width=1.5,
            visible=False,
        )
        # A ring, not a dot: a suggestion marker under the selection stays visible.
        self.selection_dot = bqplot.Scatter(
            x=[1.0],
            y=[0.0],
            scales=scales,
            colors=[_SELECTION_COLOR],
            fill=False,
            stroke_width=2,
            default_size=180,
            labels=["selected"],
            visible=False,
        )
        self.overlay = bqplot.Image(
            image=ipywidgets.Image(value=TRANSPARENT_PNG, format="png"),
            x=[start_lr, end_lr],
            # Over-cover vertically; the mark is clipped to the plot area anyway.
            y=[-1.0, 2.0],
            scales={"x": self.x_scale, "y": self.unit_scale},
        )
        self.tooltip = bqplot.Tooltip(
            fields=[field for field, _, _ in POINT_TOOLTIP],
            labels=[label for _, label, _ in POINT_TOOLTIP],
            formats=[fmt for _, _, fmt in POINT_TOOLTIP],
        )
        self.tooltip.add_class(TOOLTIP_CLASS)
        self.hover_points = bqplot.Scatter(
            x=np.zeros(0),
            y=np.zeros(0),
            scales=scales,
            colors=[_LOSS_COLOR],
            default_size=_POINT_SIZE,
            opacities=[_POINT_OPACITY],
            stroke="transparent",
            stroke_width=_POINT_HIT_WIDTH,
            tooltip=self.tooltip,
            interactions={"hover": "tooltip"},
        )
        # The LR of each hover point, in the order the browser indexes them (its clicks send
        # the index). Written with the points, by whoever owns the curves.
        self._point_lrs: FloatArray = np.zeros(0)
        self.x_axis = bqplot.Axis(scale=self.x_scale, label="learning rate", tick_format=".0e")
        self.y_axis = bqplot.Axis(scale=self.y_scale, side="left", label="loss", tick_format=".3~g")
        self.figure = bqplot.Figure(
            marks=[
                self.raw_line,
                self.raw_val_line,
                self.loss_line,
                self.val_line,
                *self.suggestion_marks.values(),
                self.selection_line,
                self.selection_dot,
                self.overlay,  # above the curves: receives every click between points
                self.hover_points,  # last: the only mark above the overlay
            ],
            axes=[self.x_axis, self.y_axis],
            animation_duration=0,
            # Range-test curves start high on the left and end high on the right; the bottom
            # left corner is the one they leave empty.
            legend_location="bottom-left",
            fig_margin={"top": 20, "bottom": 50, "left": 65, "right": 40},
            layout=ipywidgets.Layout(width="100%", height="380px"),
        )
        self.set_lr_range(start_lr, end_lr)

    # -- main thread ------------------------------------------------------------------------
    def on_click(self, callback: Callable[[float], None]) -> None:
        """Call ``callback(lr)`` for each click on the plot area.

        ``lr`` is the recorded LR of the hover point clicked, or else the LR under the click.
        """

        def overlay_click(_mark: Any, content: Mapping[str, Any]) -> None:
            data = content.get("data") or {}
            click_x = data.get("click_x")
            if isinstance(click_x, (int, float)) and math.isfinite(click_x) and click_x > 0:
                callback(float(click_x))

        def point_click(_mark: Any, content: Mapping[str, Any]) -> None:
            data = content.get("data") or {}
            index, lrs = data.get("index"), self._point_lrs
            # Points are only appended during a sweep, so an index the browser sent before the
            # latest redraw still names the same point; one from an older sweep may not exist.
            if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < lrs.size:
                callback(float(lrs[index]))

        self.overlay.on_element_click(overlay_click)
        self.hover_points.on_element_click(point_click)

    def set_lr_range(self, low: float, high: float) -> None:
        """Fix the x axis to ``[low, high]`` with decade ticks (never while a sweep draws)."""
        with self.x_scale.hold_sync():
            self.x_scale.min, self.x_scale.max = float(low), float(high)
        self.x_axis.tick_values = decade_ticks(low, high)
        self.overlay.x = [float(low), float(high)]

    def show_suggestions(self, suggestions: Mapping[str, Suggestion]) -> None:
        """Mark each rule's suggestion (with a legend entry); hide rules without an answer."""
        for rule, mark in self.suggestion_marks.items():
            suggestion = suggestions.get(rule)
            if suggestion is None or suggestion.lr is None or suggestion.loss is None:
                mark.visible = mark.display_legend = False
                continue
            with mark.hold_sync():
                mark.x, mark.y = [suggestion.lr], [suggestion.loss]
                mark.labels = [f"{rule} {suggestion.lr:.1e}"]
                mark.visible = mark.display_legend = True

    def hide_suggestions(self) -> None:
        """Hide every suggestion marker (a new sweep is starting)."""
        self.show_suggestions({})

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

    # -- owner of the curves: the sweep thread while sweeping, else the main thread ----------
    def draw_curves(self, curves: Curves) -> None:
        """Draw the loss curves and fit the y range to them."""
        _set_xy(self.raw_line, curves.lrs, curves.losses)
        _set_xy(self.loss_line, curves.lrs, curves.smoothed)
        has_val = curves.val_losses is not None and curves.smoothed_val is not None
        if has_val:
            _set_xy(self.raw_val_line, curves.lrs, curves.val_losses)
            _set_xy(self.val_line, curves.lrs, curves.smoothed_val)
        for line in (self.raw_val_line, self.val_line):
            if line.visible != has_val:
                line.visible = line.display_legend = has_val
        self._draw_hover_points(curves.lrs, curves.curve)
        y_range = robust_y_range(curves.curve, curves.raw)
        if y_range is not None:
            with self.y_scale.hold_sync():
                self.y_scale.min, self.y_scale.max = y_range

    def _draw_hover_points(self, lrs: FloatArray, curve: FloatArray) -> None:
        """One hover point per recorded LR where the shown curve is finite."""
        finite = np.isfinite(curve) & np.isfinite(lrs) & (lrs > 0)
        point_lrs = lrs[finite]
        self._point_lrs = point_lrs  # first: the browser may click a new point at once
        with self.hover_points.hold_sync():
            self.hover_points.x = point_lrs
            self.hover_points.y = curve[finite]

    def widgets(self) -> list[Any]:
        """Every widget of the figure, for closing."""
        return [self.figure]


def _line(
    scales: dict[str, Any], color: str, label: str, *, width: float, opacity: float = 1.0
) -> Any:
    return bqplot.Lines(
        x=np.zeros(0),
        y=np.zeros(0),
        scales=scales,
        colors=[color],
        opacities=[opacity],
        stroke_width=width,
        labels=[label],
        display_legend=True,
    )


def _suggestion_mark(scales: dict[str, Any], rule: str) -> Any:
    color, marker = RULE_STYLES.get(rule, _FALLBACK_STYLE)
    return bqplot.Scatter(
        x=[1.0],
        y=[0.0],
        scales=scales,
        colors=[color],
        marker=marker,
        default_size=110,
        stroke="white",
        labels=[rule],
        visible=False,
        display_legend=False,
    )


def _set_xy(line: Any, x: ArrayLike, y: ArrayLike | None) -> None:
    with line.hold_sync():
        line.x = np.asarray(x, dtype=np.float64)
        line.y = _nan_for_inf(np.zeros(0) if y is None else y)
