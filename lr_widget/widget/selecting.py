"""The half of :class:`~lr_widget.widget.LRWidget` that selects the LR: clicks on the plot or a
point, suggestion buttons, :meth:`SelectionHalf.select` and :meth:`SelectionHalf.pick`, and
applying the LR to optimizers. All of it runs in the main thread.

Every selection snaps to a recorded LR (in log space) of the curve shown: the current run while
a sweep runs, else the result's (a repeated result's median curve).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from lr_widget.compare import AnyResult
from lr_widget.engine import LRFinder
from lr_widget.repeats import RepeatedRangeTest
from lr_widget.result import RangeTestResult
from lr_widget.schedules import apply_lr, group_lr_ratios
from lr_widget.suggestions import DEFAULT_RULE, RULES, Suggestion
from lr_widget.validation import require_lr
from lr_widget.widget.controls import Controls
from lr_widget.widget.plot import Curves, LossPlot
from lr_widget.widget.runner import MainThreadQueue
from lr_widget.widget.scales import nearest_index
from lr_widget.widget.support import assign_in_notebook

__all__ = ["SelectionHalf"]


class SelectionHalf:
    """Mixin of :class:`~lr_widget.widget.LRWidget`: selecting, picking and applying the LR."""

    # Set by LRWidget.__init__.
    lr: float | None
    finder: LRFinder | None
    plot: LossPlot
    controls: Controls
    _main: MainThreadQueue
    _beta: float
    _sweeping: bool
    _apply_to: torch.optim.Optimizer | None
    _apply_pending: bool
    _assign_to: str | None
    _suggestions: dict[str, Suggestion]

    # Provided by LRWidget.
    result: Any  # property: the latest AnyResult or None
    run: Callable[[], bool]
    wait: Callable[[float | None], AnyResult | None]
    _sweep_result: Callable[[], RangeTestResult | None]

    def select(self, lr: float) -> float:
        """Select the recorded LR nearest to ``lr`` in log space (as a click does); return it.

        Raises
        ------
        ValueError
            If ``lr`` is not a finite number > 0 (``None`` included), or nothing is recorded.
        """
        wanted = require_lr("lr", lr)
        lrs = self._recorded_lrs()
        if not lrs:
            raise ValueError("no recorded learning rates to select from yet")
        chosen = lrs[nearest_index(lrs, wanted)]
        self.lr = chosen
        return chosen

    def pick(self, rule: str | None = None, timeout: float | None = None) -> float:
        """The LR to train with: wait for the sweep, keep the LR selected (clicked) if any, else
        select ``rule``'s suggestion (default: the default rule, robust for repeated runs).

        Starts the sweep first if none has run (a widget that was never displayed).

        Raises
        ------
        ValueError
            If ``rule`` is unknown, or it has no answer for this curve (the message gives the
            rule's reason).
        TimeoutError
            If the sweep is still running after ``timeout`` seconds.
        """
        rule = DEFAULT_RULE if rule is None else rule
        if rule not in RULES:
            raise ValueError(f"rule must be one of {sorted(RULES)} or None, got {rule!r}")
        if self.result is None and self.finder is not None and not self._sweeping:
            self.run()
        self.wait(timeout)
        if self.lr is not None:
            return float(self.lr)
        suggestion = self._suggestions.get(rule)
        if suggestion is None or suggestion.lr is None:
            reason = "no sweep result" if suggestion is None else suggestion.reason
            raise ValueError(f"the {rule} rule gives no LR to pick: {reason}")
        self.lr = suggestion.lr
        return float(suggestion.lr)

    def apply(self, optimizer: torch.optim.Optimizer | None = None) -> float:
        """Write the selected LR into ``optimizer`` (default: ``apply_to``); return it.

        Every parameter group keeps its ratio to the largest LR (discriminative LRs), as during
        the sweep.
        """
        target = optimizer if optimizer is not None else self._apply_to
        if target is None:
            raise ValueError("apply() needs an optimizer (or build the widget with apply_to=...)")
        if not isinstance(target, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {target!r}")
        if self.lr is None:
            raise ValueError("no LR selected yet: click the plot or a suggestion button first")
        if self._sweeping and self.finder is not None and target is self.finder.optimizer:
            raise RuntimeError(
                "the sweep is using this optimizer and will restore it; apply after it ends"
            )
        apply_lr(target, self.lr, group_lr_ratios(target))
        return float(self.lr)

    def _on_plot_click(self, lr: float) -> None:
        # A point's own LR snaps to itself, so a click on a point selects exactly that point.
        self._main.run_pending()
        if self._recorded_lrs():
            self._guarded(lambda: self.select(lr))

    def _on_suggestion_click(self, rule: str) -> None:
        self._main.run_pending()
        suggestion = self._suggestions.get(rule)
        if suggestion is not None and suggestion.lr is not None:
            self._guarded(lambda: setattr(self, "lr", suggestion.lr))

    def _on_lr_change(self, change: dict[str, Any]) -> None:
        self._show_selection()
        if change["new"] is None:
            return
        if self._apply_to is not None:
            if (
                self._sweeping
                and self.finder is not None
                and self._apply_to is self.finder.optimizer
            ):
                self._apply_pending = True  # the sweep would overwrite it: apply at the end
            else:
                self.apply(self._apply_to)
        if self._assign_to is not None:
            assign_in_notebook(self._assign_to, float(change["new"]))

    def _guarded(self, action: Any) -> None:
        """Run a click's action; show an error in the selection label (ipywidgets hides it)."""
        try:
            action()
        except Exception as error:
            self.controls.show_selection_error(f"{type(error).__name__}: {error}")

    def _shown_curve(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(lrs, curve)`` of the main curve: the current run while sweeping, else the result's
        (a repeated result's median; the failed run's if no run finished)."""
        result: AnyResult | None = self._sweep_result() if self._sweeping else self.result
        if isinstance(result, RepeatedRangeTest):
            if result.runs:
                band = result.band()
                return band.lrs, band.median
            result = self._sweep_result()
        if result is None:
            return None
        curves = Curves.of(result, self._beta)
        return curves.lrs, curves.curve

    def _show_selection(self) -> None:
        lr, loss = self.lr, None
        shown = self._shown_curve()
        if lr is not None and shown is not None and shown[0].size:
            loss = float(shown[1][nearest_index(shown[0], lr)])
        self.plot.show_selection(lr, loss)
        self.controls.show_selection(lr, loss)

    def _recorded_lrs(self) -> list[float]:
        shown = self._shown_curve()
        return [] if shown is None else [float(lr) for lr in shown[0]]
