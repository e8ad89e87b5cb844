"""Where a click on the plot lands: the transparent click overlay and the hover points.

The click overlay is a transparent 1x1 PNG shown as a ``bqplot.Image`` spanning the plot area: it
is the only bqplot mark whose click reports *where* the click landed (``click_x`` already
inverted through the log x scale). It lies above the curves and markers, so it also takes their
hover events. Only the hover points, a faint ``Scatter`` of the recorded points on the shown
curve, lie above it (last in ``Figure.marks``): hovering one shows a tooltip with its LR and loss,
clicking one selects exactly that point, and a click between points falls through to the overlay.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets
import numpy as np
from numpy.typing import NDArray

from lr_widget.curves.axes import thin_indices
from lr_widget.plotting.style import LOSS_COLOR
from lr_widget.widget._bqplot import bqplot

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

# The hover points' tooltip: (field, label, d3 format) per row, and its DOM class.
TOOLTIP_CLASS = "lr-widget-tooltip"
POINT_TOOLTIP: tuple[tuple[str, str, str], ...] = (("x", "lr", ".2e"), ("y", "loss", ".4g"))
# Small faint dots: they mark where a hover or click hits a point without hiding the curve. The
# wide transparent stroke widens the hit area (SVG hit-tests a transparent stroke) to ~10 px.
_POINT_SIZE, _POINT_OPACITY, _POINT_HIT_WIDTH = 12, 0.2, 6.0


class ClickLayer:
    """The click overlay and the hover points, on the plot's x scale.

    Ownership: the hover points belong to whoever owns the curves (the sweep thread while a
    sweep runs); the overlay's extent belongs to the main thread.
    """

    def __init__(
        self, scales: dict[str, Any], unit_scale: Any, start_lr: float, end_lr: float
    ) -> None:
        self.overlay = bqplot.Image(
            image=ipywidgets.Image(value=TRANSPARENT_PNG, format="png"),
            x=[start_lr, end_lr],
            # Over-cover vertically; the mark is clipped to the plot area anyway.
            y=[-1.0, 2.0],
            scales={"x": scales["x"], "y": unit_scale},
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
            colors=[LOSS_COLOR],
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

    def on_click(self, callback: Callable[[float], None]) -> None:
        """Call ``callback(lr)`` for each click on the plot area: the recorded LR of the hover
        point clicked, or else the LR under the click."""

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

    def set_extent(self, low: float, high: float) -> None:
        """Span the x range ``[low, high]`` (main thread)."""
        self.overlay.x = [float(low), float(high)]

    def draw_points(self, lrs: FloatArray, curve: FloatArray) -> None:
        """One hover point per recorded LR where the shown curve is finite (at most
        :data:`~lr_widget.curves.axes.MAX_DRAWN_POINTS`, evenly spread)."""
        finite = np.flatnonzero(np.isfinite(curve) & np.isfinite(lrs) & (lrs > 0))
        shown = finite[thin_indices(finite.size)]  # a long sweep: every k-th point hovers
        point_lrs = lrs[shown]
        self._point_lrs = point_lrs  # first: the browser may click a new point at once
        with self.hover_points.hold_sync():
            self.hover_points.x, self.hover_points.y = point_lrs, curve[shown]
