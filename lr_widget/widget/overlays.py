"""Marks drawn over the loss curve: the noise band of repeated runs and the rises that stand out of
it, kept results for comparison, the curvature bound, each suggestion's spread, and an LR range.

Each class builds its bqplot marks once (except :class:`KeptOverlays`, which makes a line per kept
result) and later only assigns data to them, inside ``hold_sync()``. :class:`~.plot.LossPlot`
composes them into its figure; the order of ``Figure.marks`` is set there.

A band is a ``bqplot.Lines`` with two rows of ``y`` (the band's low and high edges) and
``fill="between"``: the browser draws it as one SVG ``path.area`` between the two edges, leaving
gaps where an edge is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lr_widget.curves.axes import (
    YRange,
    envelope_indices,
    nan_for_inf,
    robust_y_range,
    union_of_ranges,
)
from lr_widget.plotting.style import (
    BAND_OPACITY,
    BUMP_COLOR,
    CURVATURE_COLOR,
    EMA_OPACITY,
    FIT_LABEL,
    RANGE_COLOR,
    SMOOTHED_MEDIAN_LABEL,
    median_fit_label,
)
from lr_widget.results.curvature import CurvatureEstimate
from lr_widget.results.spread import Bump, NoiseBand, SuggestionSpread
from lr_widget.suggestions.curve import Suggestion
from lr_widget.widget._bqplot import bqplot

FloatArray = NDArray[np.float64]

BUMP_TEXT = "real rise"
# Kept results: colours none of the live curve's or the suggestion markers' use.
KEPT_PALETTE = (
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#8c564b",
    "#7f7f7f",
    "#393b79",
    "#637939",
    "#843c39",
)
_KEPT_OPACITY = 0.14


def finite_band(band: NoiseBand) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """``(lrs, median, low, high)`` at the steps where the band is defined (some run reached)."""
    keep = (
        np.isfinite(band.lrs)
        & (band.lrs > 0)
        & np.isfinite(band.low)
        & np.isfinite(band.high)
        & np.isfinite(band.median)
    )
    return band.lrs[keep], band.median[keep], band.low[keep], band.high[keep]


def band_y_range(band: NoiseBand) -> YRange | None:
    """A readable y range for a band: its median curve's, widened to the band's edges."""
    _, median, low, high = finite_band(band)
    return robust_y_range(median, np.concatenate([low, high]))


def _empty_band_y() -> FloatArray:
    return np.zeros((2, 0))


def _fill(scales: dict[str, Any], color: str, opacity: float) -> Any:
    """A ``Lines`` mark filled between its two rows of ``y``, with invisible edges."""
    return bqplot.Lines(
        x=np.zeros(0),
        y=_empty_band_y(),
        scales=scales,
        fill="between",
        colors=[color, color],
        fill_colors=[color],
        fill_opacities=[opacity],
        opacities=[0.0, 0.0],
        stroke_width=0.5,
        display_legend=False,
        visible=False,
    )


def empty_line(
    scales: dict[str, Any], color: str, label: str, *, width: float, opacity: float = 1.0,
    **style: Any,
) -> Any:  # fmt: skip
    """A ``Lines`` mark with no data yet, labelled for the plot's own legend (bqplot's is off);
    ``style`` sets further traits (``line_style``, ``visible``)."""
    return bqplot.Lines(
        x=np.zeros(0),
        y=np.zeros(0),
        scales=scales,
        colors=[color],
        opacities=[opacity],
        stroke_width=width,
        labels=[label],
        display_legend=False,
        **style,
    )


def set_line(line: Any, x: ArrayLike, y: ArrayLike) -> None:
    """Draw ``(x, y)`` on a ``Lines`` mark in one message: non-finite values as gaps, and at
    most about :data:`~lr_widget.curves.axes.MAX_DRAWN_POINTS` points (the curve's envelope).

    Trailing non-finite points are left out: bqplot places each line's (hidden) label at its
    last point, and a NaN there made the browser log "attribute transform: Trailing garbage,
    translate(854,undefined)" for every fit cut at the blow-up and every diverged raw curve.
    """
    xs, ys = np.asarray(x, dtype=np.float64), nan_for_inf(y)
    finite = np.flatnonzero(np.isfinite(ys))
    end = int(finite[-1]) + 1 if finite.size else 0
    xs, ys = xs[:end], ys[:end]
    keep = envelope_indices(ys)
    with line.hold_sync():
        line.x, line.y = xs[keep], ys[keep]


def _set_band(mark: Any, lrs: FloatArray, low: FloatArray, high: FloatArray) -> None:
    """Fill between ``low`` and ``high`` over ``lrs`` (none: hide the band)."""
    keep = np.union1d(envelope_indices(low), envelope_indices(high)) if lrs.size else slice(0)
    with mark.hold_sync():
        mark.x = lrs[keep]
        mark.y = np.vstack([low[keep], high[keep]]) if lrs.size else _empty_band_y()
        mark.visible = bool(lrs.size)


class NoiseBandMarks:
    """The spread of repeated runs: the shaded band of their lag-free fits, its median (the bold
    curve the rules read), the median of their moving averages faded under it (it lags, and it
    goes on past the fits' end at the blow-up), and each real rise marked.

    A rise of the median counts as real when :attr:`lr_widget.results.spread.Bump.significant` says
    so (the band at its peak lies wholly above the band at its foot): it gets a triangle at the peak
    labelled :data:`BUMP_TEXT`. A rise inside the band is noise and gets nothing.
    """

    def __init__(self, scales: dict[str, Any], color: str) -> None:
        self.fill = _fill(scales, color, BAND_OPACITY)
        self.median = empty_line(scales, color, FIT_LABEL, width=2.5, visible=False)
        self.smoothed = empty_line(
            scales, color, SMOOTHED_MEDIAN_LABEL, width=2, opacity=EMA_OPACITY,
            line_style="dashed", visible=False,
        )  # fmt: skip
        self.bump_points = bqplot.Scatter(
            x=np.zeros(0),
            y=np.zeros(0),
            scales=scales,
            colors=[BUMP_COLOR],
            marker="triangle-up",
            default_size=90,
            stroke="white",
            visible=False,
        )
        self.bump_labels = bqplot.Label(
            x=np.zeros(0),
            y=np.zeros(0),
            scales=scales,
            text=np.array([], dtype=str),
            colors=[BUMP_COLOR],
            default_size=12,
            font_unit="px",
            font_weight="bold",
            align="middle",
            y_offset=-14,
            visible=False,
        )
        self.runs = 0
        self.y_range: YRange | None = None
        self.label_prefix = ""  # names the result in the legend (a comparison's label)
        self._hidden = True  # every mark empty and invisible, as built

    def draw(
        self,
        band: NoiseBand | None,
        bumps: Sequence[Bump] = (),
        runs: int = 0,
        smoothed: tuple[ArrayLike, ArrayLike] | None = None,
    ) -> None:
        """Draw ``band`` (``None`` hides it) of ``runs`` runs, marking the significant bumps;
        ``smoothed`` is ``(lrs, median of the runs' moving averages)``, drawn faded."""
        if band is None and self._hidden:
            return  # each sweep hides it at its start: skip rebuilding five empty marks
        self._hidden = band is None
        if band is None:
            lrs = median = low = high = np.zeros(0)
        else:
            lrs, median, low, high = finite_band(band)
        _set_band(self.fill, lrs, low, high)
        with self.median.hold_sync():
            set_line(self.median, lrs, median)
            if lrs.size:  # a hidden band keeps its last label: no legend churn
                self.median.labels = [f"{self.label_prefix}{median_fit_label(runs)}"]
            self.median.visible = bool(lrs.size)
        nothing = (np.zeros(0), np.zeros(0))
        smoothed_x, smoothed_y = nothing if smoothed is None or not lrs.size else smoothed
        with self.smoothed.hold_sync():
            set_line(self.smoothed, smoothed_x, smoothed_y)
            shown = len(self.smoothed.x) > 0
            if shown:
                self.smoothed.labels = [f"{self.label_prefix}{SMOOTHED_MEDIAN_LABEL}"]
            self.smoothed.visible = shown
        real = [bump for bump in bumps if bump.significant]
        peaks_x = np.array([bump.peak_lr for bump in real], dtype=np.float64)
        peaks_y = np.array([_median_at(band, bump.peak_index) for bump in real], dtype=np.float64)
        with self.bump_points.hold_sync():
            self.bump_points.x, self.bump_points.y = peaks_x, peaks_y
            self.bump_points.visible = bool(real)
        with self.bump_labels.hold_sync():
            self.bump_labels.x, self.bump_labels.y = peaks_x, peaks_y
            self.bump_labels.text = np.array([BUMP_TEXT] * len(real), dtype=str)
            self.bump_labels.visible = bool(real)
        self.runs = runs if lrs.size else 0
        self.y_range = None if band is None else band_y_range(band)

    def marks_below(self) -> list[Any]:
        """The shaded band (below every curve)."""
        return [self.fill]

    def marks_above(self) -> list[Any]:
        """The faded moving average, the median fit and the bump markers (above the band)."""
        return [self.smoothed, self.median, self.bump_points, self.bump_labels]


def _median_at(band: NoiseBand | None, index: int) -> float:
    return math.nan if band is None else float(band.median[index])


@dataclass
class _Kept:
    color: str
    fill: Any
    line: Any


class KeptOverlays:
    """Kept results drawn for comparison: a thin line each (a band's median) with its own colour
    and label (the legend lists it), and a faint band for a repeated result."""

    def __init__(self, scales: dict[str, Any]) -> None:
        self._scales = scales
        self._kept: dict[str, _Kept] = {}
        self._next_color = 0
        self.y_range: YRange | None = None

    @property
    def labels(self) -> list[str]:
        """The labels drawn, in order."""
        return list(self._kept)

    def line_of(self, label: str) -> Any:
        """The ``Lines`` mark of ``label``."""
        return self._kept[label].line

    def fill_of(self, label: str) -> Any:
        """The band mark of ``label`` (hidden for a single run)."""
        return self._kept[label].fill

    def sync(self, bands: Mapping[str, NoiseBand]) -> list[Any]:
        """Draw exactly ``bands`` (label to band; ``count`` above 1 somewhere means repeated);
        return the marks that are no longer used (for the caller to close once off the figure)."""
        gone = [label for label in self._kept if label not in bands]
        removed: list[Any] = []
        for label in gone:
            kept = self._kept.pop(label)
            removed.extend([kept.fill, kept.line])
        if not self._kept:
            self._next_color = 0
        ranges = []
        for label, band in bands.items():
            kept = self._kept.get(label) or self._add(label)
            lrs, median, low, high = finite_band(band)
            repeated = bool(band.count.size and band.count.max() > 1)
            _set_band(kept.fill, lrs if repeated else np.zeros(0), low, high)
            with kept.line.hold_sync():
                set_line(kept.line, lrs, median)
                kept.line.labels = [label]
            ranges.append(band_y_range(band))
        self.y_range = union_of_ranges(ranges)
        return removed

    def _add(self, label: str) -> _Kept:
        color = KEPT_PALETTE[self._next_color % len(KEPT_PALETTE)]
        self._next_color += 1
        line = empty_line(self._scales, color, label, width=1.5, opacity=0.9)
        kept = _Kept(color, _fill(self._scales, color, _KEPT_OPACITY), line)
        self._kept[label] = kept
        return kept

    def marks_below(self) -> list[Any]:
        """The kept bands."""
        return [kept.fill for kept in self._kept.values()]

    def marks_above(self) -> list[Any]:
        """The kept lines."""
        return [kept.line for kept in self._kept.values()]


class CurvatureMarks:
    """The curvature bound: a dashed vertical line at ``lr_bound`` with the estimate's label."""

    def __init__(self, x_scale: Any, unit_scale: Any) -> None:
        scales = {"x": x_scale, "y": unit_scale}
        self.line = bqplot.Lines(
            x=[1.0, 1.0],
            y=[0.0, 1.0],
            scales=scales,
            colors=[CURVATURE_COLOR],
            line_style="dashed",
            stroke_width=2,
            labels=["curvature bound"],
            display_legend=False,
            visible=False,
        )
        self.text = bqplot.Label(
            x=[1.0],
            y=[0.96],
            scales=scales,
            text=np.array([""], dtype=str),
            colors=[CURVATURE_COLOR],
            default_size=11,
            font_unit="px",
            align="end",
            x_offset=-5,
            visible=False,
        )

    def show(self, estimate: CurvatureEstimate | None, x_range: YRange) -> None:
        """Draw ``estimate``'s bound, or hide the marks when it has none (or ``None``)."""
        bound = None if estimate is None or not estimate.applies else estimate.lr_bound
        if estimate is None or bound is None or not (math.isfinite(bound) and bound > 0):
            self.line.visible = self.text.visible = False
            return
        low, high = x_range
        share = (math.log10(bound) - math.log10(low)) / (math.log10(high) - math.log10(low))
        with self.line.hold_sync():
            self.line.x = [bound, bound]
            self.line.labels = [f"curvature bound {bound:.1e}"]
            self.line.visible = True
        with self.text.hold_sync():
            # The label reads away from the line, into the wider side of the plot.
            self.text.x = [bound]
            self.text.text = np.array([estimate.label], dtype=str)
            self.text.align = "end" if share > 0.5 else "start"
            self.text.x_offset = -5 if share > 0.5 else 5
            self.text.visible = True

    def marks(self) -> list[Any]:
        """The line and its label."""
        return [self.line, self.text]


class SpreadBars:
    """Per rule, a horizontal bar from the lowest to the highest pick of the runs, at the height
    of that rule's suggestion marker (drawn only for repeated results)."""

    def __init__(self, scales: dict[str, Any], colors: Mapping[str, str]) -> None:
        self.bars = {
            rule: bqplot.Lines(
                x=[1.0, 1.0],
                y=[0.0, 0.0],
                scales=scales,
                colors=[color],
                stroke_width=4,
                opacities=[0.55],
                visible=False,
            )
            for rule, color in colors.items()
        }

    def show(
        self, spreads: Mapping[str, SuggestionSpread], suggestions: Mapping[str, Suggestion]
    ) -> None:
        """A bar per rule with both a spread and a marked suggestion; hide the others."""
        for rule, bar in self.bars.items():
            spread, suggestion = spreads.get(rule), suggestions.get(rule)
            low = None if spread is None else spread.low_lr
            high = None if spread is None else spread.high_lr
            loss = None if suggestion is None else suggestion.loss
            if low is None or high is None or loss is None or not math.isfinite(loss):
                bar.visible = False
                continue
            with bar.hold_sync():
                bar.x, bar.y = [low, high], [loss, loss]
                bar.visible = True

    def marks(self) -> list[Any]:
        """Every bar."""
        return list(self.bars.values())


class RangeMarks:
    """An LR range: the brush that selects one by dragging, and the shaded span that shows it.

    The brush (``bqplot.interacts.BrushIntervalSelector`` on the x scale) is only the figure's
    interaction while range mode is on: a brush catches every mouse press in the plot area,
    clicks included, so the click overlay would never see them.
    """

    def __init__(self, x_scale: Any, unit_scale: Any) -> None:
        self.brush = bqplot.interacts.BrushIntervalSelector(scale=x_scale, color=RANGE_COLOR)
        self.span = _fill({"x": x_scale, "y": unit_scale}, RANGE_COLOR, 0.3)

    def show(self, lr_range: tuple[float, float] | None) -> None:
        """Shade ``lr_range`` over the full height (``None`` hides the span)."""
        if lr_range is None:
            _set_band(self.span, np.zeros(0), np.zeros(0), np.zeros(0))
            return
        lrs = np.array(lr_range, dtype=np.float64)
        _set_band(self.span, lrs, np.zeros(2), np.ones(2))

    def set_brush(self, lr_range: tuple[float, float] | None) -> None:
        """Move the brush rectangle to ``lr_range`` (it shows when range mode is next on)."""
        self.brush.selected = None if lr_range is None else np.array(lr_range, dtype=np.float64)

    def marks(self) -> list[Any]:
        """The span (below the curves)."""
        return [self.span]
