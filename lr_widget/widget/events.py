"""The browser's events on the widget's views, wired to what they do (main thread).

:class:`BrowserEvents` connects clicks on the plot and on its points, range drags, buttons,
toggles and sliders to the session, the selection and the display, and handles the two things a
session posts to the main thread: the end of a sweep and the curvature estimate. Errors in a
click's action are shown in the widget (ipywidgets would only log them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol

from lr_widget.results.confirmation import Confirmation
from lr_widget.results.curvature import CurvatureEstimate
from lr_widget.widget.display import SweepDisplay
from lr_widget.widget.selection import Selection
from lr_widget.widget.session import SweepSession
from lr_widget.widget.targets import LRTargets


class WidgetActions(Protocol):
    """What the buttons do: the widget's own public methods."""

    def run(self) -> bool:
        """Start a sweep."""

    def stop(self) -> None:
        """Stop the sweep."""

    def keep(self, label: str | None = None) -> str:
        """Keep the current result on the plot."""

    def clear_kept(self) -> None:
        """Remove the kept results."""

    def confirm(self, lr: float | None = None) -> bool:
        """Confirm the selected LR with short training probes."""


class BrowserEvents:
    """Wires one widget's views to its parts.

    Parameters
    ----------
    actions
        The widget (Run, Stop, Keep and Clear call its methods).
    session, selection, display, targets
        The widget's parts.
    is_closed
        Whether the widget has been closed (its controls are then left alone).
    """

    def __init__(
        self,
        actions: WidgetActions,
        session: SweepSession,
        selection: Selection,
        display: SweepDisplay,
        targets: LRTargets,
        *,
        is_closed: Callable[[], bool],
    ) -> None:
        self.actions, self.session, self.selection = actions, session, selection
        self.display, self.targets, self._is_closed = display, targets, is_closed
        self._snapping = False  # moving the brush ourselves: its report is not a drag
        plot, controls = display.plot, display.controls
        plot.on_click(self._plot_clicked)
        plot.on_range_drag(self._range_dragged)
        plot.on_range_released(self._snap_brush)
        controls.run_button.on_click(lambda _button: self.run_quietly())
        controls.stop_button.on_click(lambda _button: actions.stop())
        controls.keep_button.on_click(lambda _button: self.guarded(actions.keep))
        controls.clear_button.on_click(lambda _button: actions.clear_kept())
        controls.confirm_button.on_click(lambda _button: self.guarded(actions.confirm))
        for rule, button in controls.suggestion_buttons.items():
            button.on_click(lambda _button, rule=rule: self._suggestion_clicked(rule))
        controls.range_button.observe(self._range_mode_changed, names="value")
        controls.beta.observe(self._beta_changed, names="value")
        controls.train_steps.observe(self._train_steps_changed, names="value")
        controls.all_rules.observe(self._all_rules_changed, names="value")
        selection.observe(self._lr_changed, names="lr")
        selection.observe(self._lr_range_changed, names="lr_range")

    def guarded(self, action: Callable[[], Any]) -> None:
        """Run a click's action; show an error in the selection label (ipywidgets hides it)."""
        try:
            action()
        except Exception as error:
            self.display.controls.show_selection_error(f"{type(error).__name__}: {error}")

    def run_quietly(self) -> None:
        """Run, as the Run button and displaying the widget do: a failure shows in the status."""
        with contextlib.suppress(TypeError, ValueError, RuntimeError):  # shown in the status
            self.actions.run()

    # -- posted by the session --------------------------------------------------------------
    def sweep_ended(self) -> None:
        """A sweep's end is drawn: its results, kept results, controls; a deferred apply."""
        self.display.draw_session(self.session, self.selection.lr, redraw=False)
        if not self._is_closed():
            self.display.set_idle(self.session)
        self.guarded(lambda: self.targets.sweep_ended(self.selection.lr))

    def confirmed(self, confirmation: Confirmation | None, error: BaseException | None) -> None:
        """The probes ended: say what they found; a decisive winner becomes the selection."""
        if self._is_closed():
            return
        self.display.confirm_finished(confirmation, error)
        self.display.set_idle(self.session)
        if confirmation is not None and confirmation.decisive:
            winner = confirmation.winner
            self.guarded(lambda: setattr(self.selection, "lr", winner))

    def curvature(self, estimate: CurvatureEstimate | None, note: str) -> None:
        """Draw the curvature estimate the session keeps (or why there is none)."""
        self.display.show_curvature(estimate, note)

    # -- the browser ------------------------------------------------------------------------
    def _plot_clicked(self, lr: float) -> None:
        # A point's own LR snaps to itself, so a click on a point selects exactly that point.
        if self.selection.recorded_lrs.size:
            self.guarded(lambda: self.selection.select(lr))

    def _suggestion_clicked(self, rule: str) -> None:
        suggestion = self.session.settled().suggestions.get(rule)
        if suggestion is not None and suggestion.lr is not None:
            lr = suggestion.lr
            self.guarded(lambda: setattr(self.selection, "lr", lr))

    def _range_dragged(self, low: float, high: float) -> None:
        if self._snapping:
            return  # our own move of the brush, not a drag
        hint = self.selection.drag_to(low, high)
        self.display.controls.show_range(self.selection.lr_range, hint)  # clears an old hint
        if not self.display.plot.range_dragging:
            self._snap_brush()

    def _snap_brush(self) -> None:
        """Move the brush's rectangle onto the range selected (snapped to recorded LRs), so one
        rectangle shows, where the shaded span is; never during a drag, which it would fight."""
        lr_range = self.selection.lr_range
        brush = self.display.plot.ranges.brush
        current = None if brush.selected is None else tuple(float(v) for v in brush.selected)
        if lr_range is not None and current != lr_range:
            self._snapping = True
            try:
                self.display.plot.ranges.set_brush(lr_range)
            finally:
                self._snapping = False

    def _range_mode_changed(self, change: dict[str, Any]) -> None:
        self.display.plot.set_range_mode(bool(change["new"]))

    def _lr_changed(self, change: dict[str, Any]) -> None:
        self.display.show_selection(change["new"], self.session.shown_curve())
        if change["new"] is not None:
            self.targets.selected(float(change["new"]))

    def _lr_range_changed(self, change: dict[str, Any]) -> None:
        self.display.plot.show_range(change["new"])
        self.display.controls.show_range(change["new"])

    def _train_steps_changed(self, _change: dict[str, Any]) -> None:
        """A new training length moves the default suggestion: no new sweep, nothing trained."""
        self.session.train_steps = self.display.controls.chosen_train_steps()
        if not self.session.sweeping:  # else the sweep's end shows suggestions for it
            self.display.draw_session(self.session, self.selection.lr, redraw=False)

    def _all_rules_changed(self, _change: dict[str, Any]) -> None:
        """Every rule's marker and button, or only the default's: nothing recomputed."""
        if not self.session.sweeping:
            self.display.show_suggestions(self.session.settled())

    def _beta_changed(self, change: dict[str, Any]) -> None:
        self.session.beta = float(change["new"])
        if not self.session.sweeping:  # else the sweep thread redraws with the new beta
            self.display.draw_session(self.session, self.selection.lr, redraw=True)
