"""A picture of a range-test curve as standalone SVG text, with no browser and no matplotlib.

Headless runs (the CLI, CI, a report) still want to look at the curve. This module writes it as
plain SVG: a log-scale LR axis with one labelled tick per decade, a linear loss axis with a few
round ticks, the raw losses as a faint line, the smoothed losses bold, and the suggestions as
coloured dots with a legend.

The loss axis is robust: it spans the smoothed curve from its minimum to as far above the
starting loss as the curve descends below it, so a blow-up at the end (loss 1e6 or inf) does not
squash the interesting part into a flat line. Lines leaving the plot are clipped at its edge, and
non-finite losses leave gaps. The same input always gives the same text.
"""

from __future__ import annotations

import html
import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Marker", "curve_svg", "save_curve_svg"]

Values = Sequence[float] | np.ndarray
Point = tuple[float, float]

MARKER_COLORS = ("#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")
CURVE_COLOR = "#1f77b4"
GRID_COLOR = "#e6e6e6"
AXIS_COLOR = "#444444"
MIN_WIDTH, MIN_HEIGHT = 240, 160
# Margins around the plot area, in pixels: room for the title, the tick labels and axis titles.
TOP, RIGHT, BOTTOM, LEFT = 36, 28, 52, 64
FONT_SIZE = 12
# Rough widths of one character of the 12 px font and the 15 px bold title, to keep text apart.
CHAR_WIDTH = 7.0
TITLE_CHAR_WIDTH = 9.0
Y_TICK_TARGET = 5
LINE_STYLES = {
    "raw-loss": 'stroke-width="1" stroke-opacity="0.35"',
    "smoothed-loss": 'stroke-width="2.5"',
}


@dataclass(frozen=True)
class Marker:
    """A labelled point on the curve, such as a suggested LR.

    Parameters
    ----------
    label : str
        The legend text, e.g. ``"valley 3.2e-03"``.
    lr : float
        Positive and finite.
    loss : float
        Finite; drawn at the plot's edge if it lies outside the loss axis.
    color : str or None
        Any SVG colour; ``None`` takes the next colour of a fixed palette.

    Examples
    --------
    >>> Marker("valley 3.2e-03", lr=3.2e-3, loss=0.61)
    Marker(label='valley 3.2e-03', lr=0.0032, loss=0.61, color=None)
    """

    label: str
    lr: float
    loss: float
    color: str | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"Marker lr must be positive and finite, got {self.lr!r}")
        if not math.isfinite(self.loss):
            raise ValueError(f"Marker loss must be finite, got {self.loss!r}")


@dataclass(frozen=True)
class _Frame:
    """Where the plot area lies in the picture and which data ranges it shows."""

    left: float
    top: float
    right: float
    bottom: float
    log_lr_range: tuple[float, float]
    loss_range: tuple[float, float]
    loss_step: float

    def x(self, lr: float) -> float:
        low, high = self.log_lr_range
        return self.left + (math.log10(lr) - low) / (high - low) * (self.right - self.left)

    def y(self, loss: float) -> float:
        low, high = self.loss_range
        return self.top + (high - loss) / (high - low) * (self.bottom - self.top)


def curve_svg(
    lrs: Values,
    raw_losses: Values,
    smoothed_losses: Values,
    markers: Sequence[Marker] = (),
    title: str = "",
    width: int = 720,
    height: int = 420,
) -> str:
    """Draw a range-test curve as a standalone SVG document.

    Parameters
    ----------
    lrs : sequence of float
        The LR of each step; positive and finite.
    raw_losses, smoothed_losses : sequence of float
        One loss per step each; NaN and inf are drawn as gaps.
    markers : sequence of Marker
        Points to highlight, each with a dot, a dashed line down to the LR axis and a legend entry.
    title : str
        Drawn above the plot (escaped, so any text is safe).
    width, height : int
        Size of the picture in pixels; at least 240 by 160.

    Returns
    -------
    str
        SVG text that parses as XML and renders the same in any browser or viewer.

    Examples
    --------
    >>> svg = curve_svg([1e-4, 1e-3, 1e-2], [1.0, 0.5, 2.0], [1.0, 0.6, 1.2], title="demo")
    >>> svg.startswith("<svg")
    True
    """
    lr_array, raw, smoothed = _check_curve(lrs, raw_losses, smoothed_losses)
    _check_size(width, height)
    loss_low, loss_high, loss_step = _loss_axis(raw, smoothed)
    frame = _Frame(
        left=LEFT,
        top=TOP,
        right=width - RIGHT,
        bottom=height - BOTTOM,
        log_lr_range=_log_lr_range(lr_array, markers),
        loss_range=(loss_low, loss_high),
        loss_step=loss_step,
    )
    parts = [
        *_svg_open(width, height, title),
        *_y_axis(frame),
        *_x_axis(frame),
        _polyline(frame, lr_array, raw, "raw-loss"),
        _polyline(frame, lr_array, smoothed, "smoothed-loss"),
        *_markers(frame, markers),
        *_legend(frame, markers),
        *_labels(frame, width, title),
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


def save_curve_svg(
    path: str | os.PathLike[str],
    lrs: Values,
    raw_losses: Values,
    smoothed_losses: Values,
    markers: Sequence[Marker] = (),
    title: str = "",
    width: int = 720,
    height: int = 420,
) -> Path:
    """Write :func:`curve_svg` to ``path`` (UTF-8), creating its folder; return the path.

    Examples
    --------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> save_curve_svg(f"{folder}/curve.svg", [1e-3, 1e-2], [1.0, 0.5], [1.0, 0.6]).name
    'curve.svg'
    """
    svg = curve_svg(lrs, raw_losses, smoothed_losses, markers, title, width, height)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(svg, encoding="utf-8")
    return target


def _check_curve(
    lrs: Values, raw_losses: Values, smoothed_losses: Values
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lr_array = np.asarray(lrs, dtype=np.float64).reshape(-1)
    raw = np.asarray(raw_losses, dtype=np.float64).reshape(-1)
    smoothed = np.asarray(smoothed_losses, dtype=np.float64).reshape(-1)
    if not len(lr_array) == len(raw) == len(smoothed):
        raise ValueError(
            "lrs, raw_losses and smoothed_losses must have the same length, got "
            f"{len(lr_array)}, {len(raw)} and {len(smoothed)}"
        )
    bad = np.flatnonzero(~(np.isfinite(lr_array) & (lr_array > 0)))
    if len(bad):
        raise ValueError(
            f"lrs must be positive and finite, got lrs[{bad[0]}]={float(lr_array[bad[0]])!r}"
        )
    return lr_array, raw, smoothed


def _check_size(width: int, height: int) -> None:
    for name, value, minimum in (("width", width, MIN_WIDTH), ("height", height, MIN_HEIGHT)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _log_lr_range(lrs: np.ndarray, markers: Sequence[Marker]) -> tuple[float, float]:
    """Whole decades around every LR, so both ends of the axis carry a label."""
    values = [*lrs.tolist(), *(marker.lr for marker in markers)]
    if not values:
        return (-7.0, 1.0)
    low = math.floor(math.log10(min(values)) + 1e-9)
    high = math.ceil(math.log10(max(values)) - 1e-9)
    return (float(low), float(max(high, low + 1)))


def _loss_axis(raw: np.ndarray, smoothed: np.ndarray) -> tuple[float, float, float]:
    """Lowest and highest loss shown, and the tick step.

    The range goes from the smoothed minimum to as far above the starting loss as the curve falls
    below it: the maximum is useless as a bound, since the last steps of a range test diverge on
    purpose. The start is the median of the first tenth of the curve, which the noise of one step
    cannot move. The range is then widened to multiples of a round tick step.
    """
    curve = smoothed[np.isfinite(smoothed)]
    if not len(curve):
        curve = raw[np.isfinite(raw)]
    if not len(curve):
        return (0.0, 1.0, 0.2)
    start = float(np.median(curve[: max(1, len(curve) // 10)]))
    lowest = float(curve.min())
    depth = max(start - lowest, 0.05 * abs(start)) or 1.0
    highest = min(float(curve.max()), start + depth)
    highest = max(highest, lowest + depth)
    padding = 0.05 * (highest - lowest)
    step = _nice_step((highest - lowest + 2 * padding) / Y_TICK_TARGET)
    return (
        math.floor((lowest - padding) / step) * step,
        math.ceil((highest + padding) / step) * step,
        step,
    )


def _nice_step(rough: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least ``rough``."""
    power = 10.0 ** math.floor(math.log10(rough))
    for factor in (1.0, 2.0, 5.0, 10.0):
        if factor * power >= rough * (1 - 1e-9):
            return factor * power
    return 10.0 * power


def _y_ticks(frame: _Frame) -> tuple[list[float], int]:
    """The tick values of the loss axis and how many decimals their labels need."""
    (low, high), step = frame.loss_range, frame.loss_step
    first = math.ceil(low / step - 1e-9)
    last = math.floor(high / step + 1e-9)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    return [round(k * step, decimals + 2) for k in range(first, last + 1)], decimals


def _x_decades(frame: _Frame) -> list[int]:
    """Powers of ten to label: every decade if the labels fit side by side, else every n-th."""
    low, high = (round(value) for value in frame.log_lr_range)
    decades = list(range(low, high + 1))
    label_width = CHAR_WIDTH * len("1e-05") + 8
    spacing = (frame.right - frame.left) / max(1, high - low)
    every = max(1, math.ceil(label_width / spacing))
    return [decade for decade in decades if (decade - low) % every == 0]


def _svg_open(width: int, height: int, title: str) -> list[str]:
    lines = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" '
        f'font-size="{FONT_SIZE}">'
    ]
    if title:
        lines.append(f"<title>{_escape(title)}</title>")
    lines.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="white"/>')
    return lines


def _y_axis(frame: _Frame) -> list[str]:
    ticks, decimals = _y_ticks(frame)
    lines = []
    for value in ticks:
        y = _fmt(frame.y(value))
        lines.append(
            f'<line class="grid" x1="{_fmt(frame.left)}" y1="{y}" x2="{_fmt(frame.right)}" '
            f'y2="{y}" stroke="{GRID_COLOR}"/>'
        )
        lines.append(
            f'<text class="y-tick" x="{_fmt(frame.left - 6)}" y="{y}" text-anchor="end" '
            f'dominant-baseline="middle" fill="{AXIS_COLOR}">{value:.{decimals}f}</text>'
        )
    return lines


def _x_axis(frame: _Frame) -> list[str]:
    lines = []
    bottom = _fmt(frame.bottom)
    for decade in _x_decades(frame):
        x = _fmt(frame.x(10.0**decade))
        lines.append(
            f'<line class="grid" x1="{x}" y1="{_fmt(frame.top)}" x2="{x}" y2="{bottom}" '
            f'stroke="{GRID_COLOR}"/>'
        )
        lines.append(
            f'<text class="x-tick" x="{x}" y="{_fmt(frame.bottom + 16)}" text-anchor="middle" '
            f'fill="{AXIS_COLOR}">{10.0**decade:.0e}</text>'
        )
    lines.append(
        f'<rect class="frame" x="{_fmt(frame.left)}" y="{_fmt(frame.top)}" '
        f'width="{_fmt(frame.right - frame.left)}" height="{_fmt(frame.bottom - frame.top)}" '
        f'fill="none" stroke="{AXIS_COLOR}"/>'
    )
    return lines


def _polyline(frame: _Frame, lrs: np.ndarray, losses: np.ndarray, name: str) -> str:
    points = [
        (frame.x(lr), frame.y(loss)) if math.isfinite(loss) else None
        for lr, loss in zip(lrs.tolist(), losses.tolist(), strict=True)
    ]
    path = _clipped_path(points, frame.top, frame.bottom)
    return (
        f'<path class="{name}" d="{path}" fill="none" stroke="{CURVE_COLOR}" {LINE_STYLES[name]} '
        'stroke-linejoin="round"/>'
    )


def _clipped_path(points: Sequence[Point | None], top: float, bottom: float) -> str:
    """SVG path data through ``points``, cut at ``None`` and clipped to ``top <= y <= bottom``."""
    commands: list[str] = []
    pen: Point | None = None
    for start, end in itertools.pairwise(points):
        if start is None or end is None:
            continue
        segment = _clip_segment(start, end, top, bottom)
        if segment is None:
            continue
        if segment[0] != pen:
            commands.append(f"M{_fmt(segment[0][0])},{_fmt(segment[0][1])}")
        commands.append(f"L{_fmt(segment[1][0])},{_fmt(segment[1][1])}")
        pen = segment[1]
    return " ".join(commands)


def _clip_segment(
    start: Point, end: Point, top: float, bottom: float
) -> tuple[Point, Point] | None:
    """The part of a segment with ``top <= y <= bottom``, or ``None`` (Liang-Barsky in y)."""
    (x0, y0), (x1, y1) = start, end
    if not all(math.isfinite(value) for value in (x0, y0, x1, y1)):
        return None
    dy = y1 - y0
    if dy == 0:
        return (start, end) if top <= y0 <= bottom else None
    enter, leave = sorted(((top - y0) / dy, (bottom - y0) / dy))
    t0, t1 = max(0.0, enter), min(1.0, leave)
    if t0 > t1:
        return None
    # Keep the exact end points when not clipped, so consecutive segments join into one path.
    clipped_start = start if t0 == 0.0 else (x0 + t0 * (x1 - x0), y0 + t0 * dy)
    clipped_end = end if t1 == 1.0 else (x0 + t1 * (x1 - x0), y0 + t1 * dy)
    return clipped_start, clipped_end


def _marker_color(index: int, marker: Marker) -> str:
    return marker.color or MARKER_COLORS[index % len(MARKER_COLORS)]


def _markers(frame: _Frame, markers: Sequence[Marker]) -> list[str]:
    lines = []
    for index, marker in enumerate(markers):
        color = _escape(_marker_color(index, marker))
        x = _fmt(frame.x(marker.lr))
        y = _fmt(min(max(frame.y(marker.loss), frame.top), frame.bottom))
        lines.append(
            f'<line class="marker-line" x1="{x}" y1="{y}" x2="{x}" y2="{_fmt(frame.bottom)}" '
            f'stroke="{color}" stroke-dasharray="4 3"/>'
        )
        lines.append(
            f'<circle class="marker" cx="{x}" cy="{y}" r="5" fill="{color}" stroke="white" '
            f'stroke-width="1.5"><title>{_escape(marker.label)}</title></circle>'
        )
    return lines


def _legend(frame: _Frame, markers: Sequence[Marker]) -> list[str]:
    """A boxed legend in the bottom-left corner, which a range-test curve leaves empty."""
    labels = ["raw loss", "smoothed loss", *(marker.label for marker in markers)]
    row, sample = 18.0, 22.0
    box_width = 16 + sample + 6 + CHAR_WIDTH * max(len(label) for label in labels)
    box_height = 8 + row * len(labels)
    left, top = frame.left + 10, frame.bottom - 10 - box_height
    lines = [
        f'<rect class="legend" x="{_fmt(left)}" y="{_fmt(top)}" width="{_fmt(box_width)}" '
        f'height="{_fmt(box_height)}" fill="white" fill-opacity="0.85" stroke="#cccccc"/>'
    ]
    for index, label in enumerate(labels):
        y = top + 4 + row * (index + 0.5)
        swatch = _legend_swatch(index, markers, left + 8, left + 8 + sample, y)
        lines.append(
            f'<g class="legend-entry">{swatch}<text x="{_fmt(left + 14 + sample)}" y="{_fmt(y)}" '
            f'dominant-baseline="middle" fill="{AXIS_COLOR}">{_escape(label)}</text></g>'
        )
    return lines


def _legend_swatch(index: int, markers: Sequence[Marker], x0: float, x1: float, y: float) -> str:
    """Entry 0 is the raw line, entry 1 the smoothed line, then one dot per marker."""
    if index < 2:
        style = LINE_STYLES["raw-loss" if index == 0 else "smoothed-loss"]
        return (
            f'<line x1="{_fmt(x0)}" y1="{_fmt(y)}" x2="{_fmt(x1)}" y2="{_fmt(y)}" '
            f'stroke="{CURVE_COLOR}" {style}/>'
        )
    color = _escape(_marker_color(index - 2, markers[index - 2]))
    return f'<circle cx="{_fmt((x0 + x1) / 2)}" cy="{_fmt(y)}" r="5" fill="{color}"/>'


def _labels(frame: _Frame, width: int, title: str) -> list[str]:
    middle_x = (frame.left + frame.right) / 2
    middle_y = (frame.top + frame.bottom) / 2
    lines = [
        f'<text class="axis-title" x="{_fmt(middle_x)}" y="{_fmt(frame.bottom + 40)}" '
        f'text-anchor="middle" fill="{AXIS_COLOR}">learning rate</text>',
        f'<text class="axis-title" x="16" y="{_fmt(middle_y)}" text-anchor="middle" '
        f'transform="rotate(-90 16 {_fmt(middle_y)})" fill="{AXIS_COLOR}">loss</text>',
    ]
    if title:
        lines.append(
            f'<text class="title" x="{_fmt(width / 2)}" y="22" text-anchor="middle" '
            f'font-size="15" font-weight="bold" fill="#222222">'
            f"{_escape(_shorten(title, int((width - 16) / TITLE_CHAR_WIDTH)))}</text>"
        )
    return lines


def _shorten(text: str, max_chars: int) -> str:
    """``text`` cut to ``max_chars`` with an ellipsis; the full title stays in ``<title>``."""
    return text if len(text) <= max_chars else text[: max(0, max_chars - 1)].rstrip() + "…"


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _fmt(value: float) -> str:
    """Two decimals, no trailing zeros, no ``-0``: short, stable coordinates."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
