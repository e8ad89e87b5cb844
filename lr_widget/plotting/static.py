"""Static pictures of a result with matplotlib: ``result.plot()`` and the command line's picture.

matplotlib is optional (``pip install matplotlib``, or the ``plot`` extra) and imported only
when a picture is drawn. The picture uses the widget's colours, markers, log ticks and y range
(:mod:`lr_widget.plotting.style`, :mod:`lr_widget.curves.axes`): one run draws its raw loss faintly,
the live view's EMA dashed and the lag-free fit the suggestions read in bold (of the validation loss
when it was measured), several runs the median of their lag-free fits in bold, in the band of the
fits' spread. The default suggestion is *the* answer, as in the widget: a large marker labelled
"suggested 3.1e-03" on the plot; the other rules are marked only with ``all_rules=True``. The
legend sits outside the plot area, to its right, never over the data.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lr_widget.curves.axes import decade_ticks, nan_for_inf, robust_y_range, union_of_ranges
from lr_widget.plotting.style import (
    BAND_COLOR,
    BAND_OPACITY,
    EMA_OPACITY,
    FIT_LABEL,
    LOSS_COLOR,
    RAW_COLOR,
    RAW_OPACITY,
    SMOOTHED_MEDIAN_LABEL,
    VAL_COLOR,
    median_fit_label,
    rule_style,
)
from lr_widget.suggestions.registry import DEFAULT_RULE

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from lr_widget.results.protocol import SweepResult

_FIGURE_SIZE = (10.0, 4.5)  # the plot, and the legend to its right


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "drawing a result needs matplotlib: pip install matplotlib (or lr_widget[plot])"
        ) from error
    return matplotlib


def plot_result(
    result: SweepResult,
    ax: Axes | None = None,
    *,
    title: str | None = None,
    all_rules: bool = False,
) -> Axes:
    """Draw ``result`` on ``ax`` (default: new axes from ``matplotlib.pyplot``); return the axes.
    ``all_rules`` marks every rule's suggestion, not only the default's.

    Examples
    --------
    >>> from lr_widget import RangeTestResult
    >>> import numpy as np
    >>> lrs = np.logspace(-5, -1, 40).tolist()
    >>> losses = (2.0 - np.tanh(np.log10(lrs) + 3)).tolist()
    >>> ax = RangeTestResult(lrs=lrs, losses=losses).plot()
    >>> ax.get_xscale(), ax.get_xlabel()
    ('log', 'learning rate')
    """
    if ax is None:
        _matplotlib()
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=_FIGURE_SIZE, layout="constrained")
    y_ranges = _draw_curves(ax, result)
    _mark_suggestions(ax, result, all_rules)
    lrs = [float(lr) for lr in result.lrs]
    if lrs:
        low, high = min(lrs), max(lrs)
        ax.set_xscale("log")
        if low < high:
            ax.set_xlim(low, high)
            ax.set_xticks(decade_ticks(low, high))
    else:
        ax.set_xscale("log")
    y_range = union_of_ranges(y_ranges)
    if y_range is not None:
        ax.set_ylim(*y_range)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("loss")
    ax.grid(True, which="major", color="#e6e6e6", linewidth=0.8)
    if title is not None:
        ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        # Outside the plot area, to its right: inside, it covered the start of the descent.
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    return ax


def _draw_curves(ax: Axes, result: SweepResult) -> list[tuple[float, float] | None]:
    """The curves, and the y range each needs."""
    if not result.is_repeated:
        run = result.runs[0]
        lrs = np.asarray(run.lrs, dtype=np.float64)
        has_val = run.val_losses is not None and run.smoothed_val_losses is not None
        fit = run.lag_free_curve
        ranges = [
            _line_pair(ax, lrs, run.losses, run.smoothed_losses, LOSS_COLOR, "loss",
                       None if has_val else fit)
        ]  # fmt: skip
        if run.val_losses is not None and run.smoothed_val_losses is not None:
            ranges.append(
                _line_pair(ax, lrs, run.val_losses, run.smoothed_val_losses, VAL_COLOR,
                           "val loss", fit)
            )  # fmt: skip
            return ranges[1:]  # the suggestions read the validation curve: fit to it
        return ranges
    band = result.band()  # of the runs' lag-free fits: the curves the rules read
    finite = np.isfinite(band.median) & np.isfinite(band.low) & np.isfinite(band.high)
    lrs = band.lrs[finite]
    ax.fill_between(
        lrs, band.low[finite], band.high[finite], color=BAND_COLOR, alpha=BAND_OPACITY,
        linewidth=0, label=f"spread of {len(result.runs)} runs",
    )  # fmt: skip
    smoothed_lrs, smoothed = result.shown_curve()
    ax.plot(smoothed_lrs, nan_for_inf(smoothed), color=BAND_COLOR, linewidth=1.5,
            alpha=EMA_OPACITY, linestyle="--", label=SMOOTHED_MEDIAN_LABEL)  # fmt: skip
    ax.plot(band.lrs, nan_for_inf(band.median), color=BAND_COLOR, linewidth=2,
            label=median_fit_label(len(result.runs)))  # fmt: skip
    # The bold fit runs ahead of the lagging EMA: the range is the fit's, as for a single run.
    return [robust_y_range(band.median, np.concatenate([band.low, band.high]))]


def _line_pair(
    ax: Axes,
    lrs: np.ndarray,
    raw: Sequence[float],
    smoothed: np.ndarray,
    color: str,
    name: str,
    fit: np.ndarray | None,
) -> tuple[float, float] | None:
    """Raw and EMA of one series, and its lag-free ``fit`` (bold, the EMA faded) if given."""
    ax.plot(lrs, nan_for_inf(raw), color=RAW_COLOR, alpha=RAW_OPACITY, linewidth=1,
            label=f"{name} (raw)")  # fmt: skip
    if fit is None:
        ax.plot(lrs, nan_for_inf(smoothed), color=color, linewidth=2, label=f"{name} (smoothed)")
        return robust_y_range(smoothed, raw)
    ax.plot(lrs, nan_for_inf(smoothed), color=color, linewidth=1.5, alpha=EMA_OPACITY,
            linestyle="--", label=f"{name} (smoothed)")  # fmt: skip
    label = FIT_LABEL if name == "loss" else f"val {FIT_LABEL}"
    ax.plot(lrs, nan_for_inf(fit), color=color, linewidth=2, label=label)
    return robust_y_range(smoothed, raw)


def _mark_suggestions(ax: Axes, result: SweepResult, all_rules: bool) -> None:
    try:
        suggestions = result.suggestions()
    except ValueError:  # a curve the rules reject (a hand-made result): nothing to mark
        return
    for rule, suggestion in suggestions.items():
        if suggestion.lr is None or suggestion.loss is None:
            continue
        style = rule_style(rule)
        if rule == DEFAULT_RULE:
            ax.scatter(
                [suggestion.lr], [suggestion.loss], color=style.color,
                marker=style.matplotlib_marker, s=150, edgecolors="white", zorder=4,
                label=f"suggested {suggestion.lr:.1e} ({rule})",
            )  # fmt: skip
            ax.annotate(
                f"suggested {suggestion.lr:.1e}", (suggestion.lr, suggestion.loss),
                xytext=(10, 8), textcoords="offset points", color=style.color,
                fontweight="bold", fontsize="medium", zorder=5,
            )  # fmt: skip
        elif all_rules:
            ax.scatter(
                [suggestion.lr], [suggestion.loss], color=style.color,
                marker=style.matplotlib_marker, s=70, edgecolors="white", zorder=3,
                label=f"{rule} {suggestion.lr:.1e}",
            )  # fmt: skip


def save_picture(
    result: SweepResult,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    all_rules: bool = False,
) -> Path:
    """Write ``result``'s picture to ``path`` (``.svg``, ``.png``, ``.pdf``: by its suffix);
    ``all_rules`` marks every rule's suggestion, not only the default's.

    Uses a figure of its own (no pyplot state, no display needed). The same result always gives
    the same SVG text: no date, fixed element ids.
    """
    matplotlib = _matplotlib()
    from matplotlib.figure import Figure

    target = Path(path)
    figure = Figure(figsize=_FIGURE_SIZE, layout="constrained")  # room for the legend outside
    plot_result(result, figure.add_subplot(), title=title, all_rules=all_rules)
    metadata: dict[str, Any] = {}
    if target.suffix.lower() == ".svg":
        metadata = {"Date": None}
    elif target.suffix.lower() == ".png":
        metadata = {"Software": None}
    with matplotlib.rc_context({"svg.hashsalt": "lr_widget", "svg.fonttype": "none"}):
        figure.savefig(target, metadata=metadata)
    return target
