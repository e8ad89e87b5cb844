"""The half of :class:`~lr_widget.widget.LRWidget` that draws over the main curve: kept results
for comparison, the curvature bound, and a selected LR range. All of it runs in the main thread.

Kept results live in a :class:`~lr_widget.compare.Comparison` (``w.comparison``); each draws as a
band (:class:`~lr_widget.spread.NoiseBand`, of zero width for a single run) smoothed like the main
curve. An LR range is chosen by dragging a ``BrushIntervalSelector`` (range mode) or by
:meth:`OverlayHalf.select_range`; both snap its ends to recorded LRs in log space.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from lr_widget.compare import AnyResult, Comparison
from lr_widget.curvature import CurvatureEstimate
from lr_widget.engine import LRFinder
from lr_widget.repeats import RepeatedRangeTest
from lr_widget.settings import SweepSettings
from lr_widget.spread import NoiseBand
from lr_widget.validation import require_lr
from lr_widget.widget.controls import Controls
from lr_widget.widget.plot import LossPlot
from lr_widget.widget.runner import MainThreadQueue
from lr_widget.widget.scales import snap_range
from lr_widget.widget.support import (
    copy_result,
    has_data,
    label_of,
    settings_of,
    x_range,
)

__all__ = ["OverlayHalf", "default_labels"]


class OverlayHalf:
    """Mixin of :class:`~lr_widget.widget.LRWidget`: kept results, curvature line, LR range."""

    # Set by LRWidget.__init__.
    finder: LRFinder | None
    plot: LossPlot
    controls: Controls
    comparison: Comparison
    lr_range: tuple[float, float] | None
    _main: MainThreadQueue
    _beta: float
    _sweeping: bool
    _curvature: CurvatureEstimate | None
    _loaded_result: AnyResult | None

    # Provided by LRWidget.
    result: Any  # property: the latest AnyResult or None
    _recorded_lrs: Callable[[], list[float]]

    @property
    def curvature(self) -> CurvatureEstimate | None:
        """The curvature estimate drawn (``curvature=True`` or :meth:`show_curvature`)."""
        return self._curvature

    def select_range(self, low: float, high: float) -> tuple[float, float]:
        """Select the LR range from the recorded LR nearest ``low`` to the one nearest ``high``
        (in log space), as a drag in range mode does; return it (also :attr:`lr_range`).

        Raises
        ------
        ValueError
            If an end is not a finite number > 0, ``low >= high``, nothing is recorded, or both
            ends snap to the same recorded LR.
        """
        low_lr, high_lr = require_lr("low", low), require_lr("high", high)
        if not low_lr < high_lr:
            raise ValueError(f"low must be smaller than high, got low={low!r}, high={high!r}")
        lrs = self._recorded_lrs()
        if not lrs:
            raise ValueError("no recorded learning rates to select a range from yet")
        snapped = snap_range(lrs, low_lr, high_lr)
        self.lr_range = snapped
        self.plot.ranges.set_brush(snapped)
        return snapped

    def keep(self, label: str | None = None) -> str:
        """Keep the current result on the plot, to compare with later sweeps; return its label.

        The result is copied into :attr:`comparison` under ``label`` (default ``"run N"``) and
        drawn as a thin line (a faint band for a repeated result) with its own colour and legend
        entry, smoothed like the main curve.

        Raises
        ------
        RuntimeError
            While a sweep runs.
        ValueError
            Without a result to keep, or if ``label`` is already used.
        """
        self._main.run_pending()
        if self._sweeping:
            raise RuntimeError("a sweep is running: keep its result once it ends (w.wait())")
        result = self.result
        if result is None or not has_data(result):
            raise ValueError("there is no result to keep yet: run a sweep first")
        kept = self.comparison.add(copy_result(result), label)
        self._draw_kept()
        return kept

    def clear_kept(self) -> None:
        """Remove every kept result (the whole :attr:`comparison`) from the plot."""
        self._main.run_pending()
        self.comparison.clear()
        self._draw_kept()

    def show_curvature(self, estimate: CurvatureEstimate | None) -> None:
        """Draw ``estimate``'s LR bound as a dashed vertical line labelled with
        ``estimate.label``; when the bound does not apply, show its explanation instead.
        ``None`` removes it."""
        if estimate is not None and not isinstance(estimate, CurvatureEstimate):
            raise TypeError(f"estimate must be a CurvatureEstimate or None, got {estimate!r}")
        self._curvature = estimate
        self.plot.show_curvature(estimate)
        note = ""
        if estimate is not None and estimate.applies and estimate.lr_bound is not None:
            low, high = self.plot.lr_range_shown
            if not low <= estimate.lr_bound <= high:
                note = "off the plot's LR range"
        self.controls.show_curvature(estimate, note)

    def _on_range_drag(self, low: float, high: float) -> None:
        self._main.run_pending()
        lrs = self._recorded_lrs()
        if not lrs:
            self.controls.show_range(self.lr_range, "run a sweep first: no LRs recorded")
            return
        try:
            snapped = snap_range(lrs, low, high)
        except ValueError:
            self.controls.show_range(self.lr_range, "drag across at least two recorded LRs")
            return
        self.lr_range = snapped
        self.controls.show_range(snapped)  # also clears a hint when the range is unchanged

    def _on_range_mode(self, change: dict[str, Any]) -> None:
        self.plot.set_range_mode(bool(change["new"]))

    def _on_lr_range_change(self, change: dict[str, Any]) -> None:
        self.plot.show_range(change["new"])
        self.controls.show_range(change["new"])

    def _draw_kept(self) -> None:
        """Draw :attr:`comparison` (but the primary result, drawn as the main curve)."""
        bands = {
            label: band_of(result, self._beta)
            for label, result in self.comparison.items()
            if result is not self._loaded_result
        }
        self.plot.show_kept(bands, fit_y=not self._sweeping)
        self.controls.set_kept(len(self.comparison))
        if not self._sweeping:
            self.plot.set_lr_range(*self._x_range(self._settings(), self.result))
            if self._curvature is not None:
                self.show_curvature(self._curvature)  # its label's side depends on the x range

    def _settings(self) -> SweepSettings:
        return self.finder.settings if self.finder is not None else settings_of(self.result)

    def _x_range(self, settings: SweepSettings, primary: AnyResult | None) -> tuple[float, float]:
        return x_range(settings, primary, *self.comparison.results)


def band_of(result: AnyResult, beta: float) -> NoiseBand:
    """``result`` as a band smoothed with ``beta`` (a single run: a band of zero width)."""
    if isinstance(result, RepeatedRangeTest):
        return result.with_beta(beta).band()
    return NoiseBand.from_result(result.with_beta(beta))


def default_labels(items: Sequence[Any]) -> list[str | None]:
    """File stems for paths (made unique: ``"sweep"``, ``"sweep (2)"``), ``None`` for objects."""
    labels: list[str | None] = []
    for item in items:
        stem = label_of(item)
        if stem is not None:
            base, number = stem, 2
            while stem in labels:
                stem, number = f"{base} ({number})", number + 1
        labels.append(stem)
    return labels
