"""Colours and markers shared by the live widget (bqplot) and static plots (matplotlib), so that a
curve, a suggestion or a band looks the same wherever it is drawn."""

from __future__ import annotations

from dataclasses import dataclass

LOSS_COLOR = "#1f77b4"
VAL_COLOR = "#ff7f0e"
RAW_COLOR = "#757575"
RAW_OPACITY = 0.6
BAND_COLOR = "#3949ab"  # repeated runs' band and median: not the live run's blue
BAND_OPACITY = 0.22
BUMP_COLOR = "#b71c1c"
CURVATURE_COLOR = "#00897b"
RANGE_COLOR = "#fdd835"
SELECTION_COLOR = "#000000"
EMA_OPACITY = 0.55  # the live view's EMA once the lag-free fit is drawn over it
FIT_LABEL = "lag-free fit (rules read it)"
SMOOTHED_MEDIAN_LABEL = "loss (smoothed), median of runs"


def median_fit_label(runs: int) -> str:
    """The legend label of repeated runs' bold curve, the median of their lag-free fits.

    >>> median_fit_label(5)
    'lag-free fit, median of 5 runs (rules read it)'
    """
    return f"lag-free fit, median of {runs} run{'' if runs == 1 else 's'} (rules read it)"


@dataclass(frozen=True)
class MarkerStyle:
    """How one suggestion rule is marked: a colour and the same shape in both libraries."""

    color: str
    bqplot_marker: str
    matplotlib_marker: str


RULE_STYLES: dict[str, MarkerStyle] = {
    "steep": MarkerStyle("#2ca02c", "triangle-down", "v"),
    "valley": MarkerStyle("#d62728", "diamond", "D"),
    "minimum": MarkerStyle("#9467bd", "square", "s"),
    "slide": MarkerStyle("#ff7f0e", "cross", "P"),
    "consensus": MarkerStyle("#a6761d", "circle", "o"),
    # The default's own marker; bqplot's "plus" is stroke-only.
    "for_length": MarkerStyle("#e7298a", "ellipse", "X"),
    "minimum_third": MarkerStyle("#e6ab02", "circle", "p"),
    "minimum_half": MarkerStyle("#66a61e", "rectangle", "h"),
    "steep_minimum": MarkerStyle("#1b9e77", "triangle-up", "^"),
}
_FALLBACK = MarkerStyle("#525252", "circle", "o")


def rule_style(rule: str) -> MarkerStyle:
    """The marker of ``rule`` (a neutral grey circle for a rule without its own).

    >>> rule_style("valley").color
    '#d62728'
    """
    return RULE_STYLES.get(rule, _FALLBACK)
