"""The plot's legend, drawn as a row of HTML under the figure: never over the data.

bqplot draws its legend inside the plot area (``Figure.legend_location`` names a corner of it),
where on a range test it covered the start of the descent and the markers there. Every mark keeps
``display_legend=False``; :class:`~.plot.LossPlot` lists what it shows as :class:`LegendEntry`
values and :class:`PlotLegend` renders them: a swatch in each mark's own colour, dash and opacity,
and its label.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ipywidgets

LEGEND_CLASS = "lr-widget-legend"
"""The legend's CSS class (for browser tests)."""


@dataclass(frozen=True)
class LegendEntry:
    """One line of the legend: what a mark looks like and what it is called.

    ``kind`` is ``"line"`` (a stroke, ``dashed`` or not) or ``"marker"`` (a dot).

    >>> LegendEntry("loss", "#1f77b4").kind
    'line'
    """

    label: str
    color: str
    kind: str = "line"
    dashed: bool = False
    opacity: float = 1.0
    width: float = 2.0
    bold: bool = False


def _swatch(entry: LegendEntry) -> str:
    color = html.escape(entry.color, quote=True)
    if entry.kind == "marker":
        shape = f'<circle cx="9" cy="6" r="5" fill="{color}" stroke="white" stroke-width="1"/>'
    else:
        dash = ' stroke-dasharray="5 3"' if entry.dashed else ""
        shape = (
            f'<line x1="0" y1="6" x2="18" y2="6" stroke="{color}" '
            f'stroke-width="{entry.width:g}"{dash}/>'
        )
    return (
        f'<svg width="18" height="12" style="vertical-align: middle; opacity: {entry.opacity:g}">'
        f"{shape}</svg>"
    )


def legend_html(entries: Sequence[LegendEntry]) -> str:
    """The entries as one wrapping row of swatches and labels.

    >>> text = legend_html([LegendEntry("loss (raw)", "#aaa"), LegendEntry("a < b", "red")])
    >>> text.count("<svg"), "a &lt; b" in text
    (2, True)
    >>> legend_html([])
    ''
    """
    items = []
    for entry in entries:
        label = html.escape(entry.label)
        if entry.bold:
            label = f"<b>{label}</b>"
        items.append(
            f'<span style="white-space: nowrap; margin-right: 14px">{_swatch(entry)} {label}</span>'
        )
    if not items:
        return ""
    return f'<div style="line-height: 1.6; font-size: 12px">{"".join(items)}</div>'


class PlotLegend:
    """The legend widget; :meth:`show` replaces its entries (no message when they are
    unchanged). Safe from either thread: the sweep thread redraws the live curves' entries while
    the main thread may add a kept result's, and each reads the marks under the one lock."""

    def __init__(self) -> None:
        self.widget = ipywidgets.HTML(value="")
        self.widget.add_class(LEGEND_CLASS)
        self.entries: tuple[LegendEntry, ...] = ()
        self._lock = threading.Lock()

    def show(self, entries_of: Callable[[], Sequence[LegendEntry]]) -> None:
        """Draw exactly the entries ``entries_of()`` returns (called under the lock), in order."""
        with self._lock:
            entries = tuple(entries_of())
            if entries == self.entries:
                return
            self.entries = entries
            self.widget.value = legend_html(entries)

    @property
    def labels(self) -> list[str]:
        """The labels shown, in order."""
        return [entry.label for entry in self.entries]
