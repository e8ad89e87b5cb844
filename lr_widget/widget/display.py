"""Drawing a sweep session on the plot and the controls: the views' one writer per thread.

:class:`SweepDisplay` turns what a :class:`~.session.SweepSession` knows into calls on the
:class:`~.plot.LossPlot` and the :class:`~.controls.Controls`; it holds no state of the sweep
itself. Its ``sweep_*`` hooks (the :class:`~.session.SweepView` protocol) run in the sweep
thread and touch only what that thread owns while sweeping (the curves, the noise band, the y
range, progress and status); every other method runs in the main thread.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from lr_widget.engine.recording import StepEvent
from lr_widget.results.confirmation import Confirmation
from lr_widget.results.curvature import CurvatureEstimate
from lr_widget.results.protocol import SweepResult
from lr_widget.results.range_test import RangeTestResult, StopReason
from lr_widget.suggestions.registry import DEFAULT_RULE
from lr_widget.widget.controls import Controls, format_seconds
from lr_widget.widget.curves import Curves, LiveCurves, fit_where_defined
from lr_widget.widget.plot import LossPlot
from lr_widget.widget.session import MainCurve, Shown, SweepSession
from lr_widget.widget.support import x_range

FloatArray = NDArray[np.float64]


class SweepDisplay:
    """The plot and controls of one widget, drawn from a session's results.

    Parameters
    ----------
    plot, controls
        The views.
    optimizer_note
        Appended to every status line (``"optimizer: AdamW (default)"``): the LR found is for
        that optimizer.
    """

    def __init__(self, plot: LossPlot, controls: Controls, optimizer_note: str) -> None:
        self.plot = plot
        self.controls = controls
        self.optimizer_note = optimizer_note
        self._drawn_beta: float | None = None  # the beta of the single-run curves drawn
        self._fit_drawn = False  # whether they include the lag-free fit (not while sweeping)
        self._live = LiveCurves()  # the sweep thread's

    def status(self, text: str, *, error: bool = False) -> None:
        """One status line, with the optimizer noted."""
        note = f" · {self.optimizer_note}" if self.optimizer_note else ""
        self.controls.show_status(f"{text}{note}", error=error)

    # -- sweep thread (SweepView) -----------------------------------------------------------
    def sweep_started(self, num_steps: int) -> None:
        """An empty plot and progress bar."""
        self.controls.reset_progress(num_steps)
        self.status("running…")
        self.plot.draw_band(None)
        self.plot.draw_curves(Curves.empty())

    def curvature_running(self, running: bool) -> None:
        """Say that the curvature is being estimated, then that the sweep runs."""
        self.status("estimating the curvature…" if running else "running…")

    def sweep_progress(
        self, run: RangeTestResult | None, event: StepEvent | None, beta: float
    ) -> None:
        """Draw the current run so far and the progress line; an ended run's last drawing
        includes its lag-free fit, so the end of the sweep draws the curves once, not twice."""
        if run is not None:
            curves = self._live.update(run, beta)
            ended = run.stop_reason is not StopReason.RUNNING
            self.plot.draw_curves(curves.with_fit(run) if ended else curves)
            self._drawn_beta, self._fit_drawn = beta, ended
        if event is not None:
            self.controls.show_progress(event)

    def run_finished(self, partial: SweepResult, beta: float) -> None:
        """Redraw the band of the finished runs (it grows run by run); a single sweep has no
        band to grow, and its end is drawn by :meth:`show_result`."""
        if not partial.is_repeated:
            return
        shown = partial.with_beta(beta)
        self.plot.draw_band(shown.band(), shown.real_bumps(), len(shown.runs), shown.shown_curve())

    def sweep_finished(
        self, result: SweepResult | None, error: BaseException | None, seconds: float
    ) -> None:
        """The status and progress lines of the ended sweep."""
        text, failed = status_of(result, error)
        self.status(text, error=failed)
        self.controls.show_done(done_text(result, error, seconds))

    # -- main thread ------------------------------------------------------------------------
    def show_result(self, shown: Shown, *, redraw: bool = True) -> None:
        """Draw ``shown`` as the main curve (for repeated runs the band of their lag-free fits,
        its median in bold; a repeated result without a finished run leaves the live run's
        curve as it is), the lag-free fit its rules read, and its suggestions. ``redraw=False``
        keeps single-run curves already drawn with its beta and only adds the fit (the end of a
        sweep)."""
        result = shown.result
        if result.is_repeated:
            if result.runs:
                band, (lrs, smoothed) = result.band(), result.shown_curve()
                self.plot.clear_curves()
                self.plot.draw_band(band, shown.bumps, len(result.runs), (lrs, smoothed))
                # hover points on the bold median fit, on the smoothed median past its end
                self.plot.draw_points(lrs, fit_where_defined(band.median, smoothed))
        elif redraw or self._drawn_beta != result.beta:
            self.plot.draw_band(None)
            self.plot.draw_curves(Curves.of(result.runs[0], result.beta, fitted=True))
            self._drawn_beta, self._fit_drawn = result.beta, True
        elif not self._fit_drawn:
            self.plot.draw_fit(
                self._live.update(result.runs[0], result.beta).with_fit(result.runs[0])
            )
            self._fit_drawn = True
        self.show_suggestions(shown)

    def show_suggestions(self, shown: Shown | None) -> None:
        """Mark every suggestion, enable its button, show the spreads and the real rises;
        ``None`` hides them all (a new sweep is starting)."""
        suggestions = {} if shown is None else shown.suggestions
        spreads = {} if shown is None else shown.spreads
        all_rules = bool(self.controls.all_rules.value)
        self.plot.show_suggestions(suggestions, all_rules=all_rules)
        self.plot.show_spreads(
            spreads
            if all_rules
            else {rule: s for rule, s in spreads.items() if rule == DEFAULT_RULE},
            suggestions,
        )
        self.controls.show_all_rules(all_rules)
        self.controls.show_answer(None if shown is None else suggestions.get(DEFAULT_RULE))
        self.controls.show_suggestions(suggestions, spreads)
        self.controls.show_spreads(spreads, [] if shown is None else shown.bumps)

    def show_selection(self, lr: float | None, curve: MainCurve | None) -> None:
        """The selected LR, and the main curve's loss at the recorded LR nearest to it."""
        loss, on_fit = None, False
        if lr is not None and curve is not None and curve.lrs.size:
            loss, on_fit = curve.at(lr)
        self.plot.show_selection(lr, loss)
        self.controls.show_selection(lr, loss, on_fit)

    def confirm_started(self, lr: float) -> None:
        """The controls and status while confirmation probes train (main thread)."""
        self.controls.set_running(True)
        self.controls.stop_button.disabled = True  # Stop stops sweeps; the probes are short
        self.status(f"confirming {lr:.2g}: short training probes around it…")

    def confirm_finished(
        self, confirmation: Confirmation | None, error: BaseException | None
    ) -> None:
        """What the probes found, or why they failed (main thread)."""
        if confirmation is None:
            self.status(f"confirmation failed: {type(error).__name__}: {error}", error=True)
        else:
            self.status(f"{confirmation.reason} ({confirmation.steps} probe steps; restored)")

    def show_curvature(self, estimate: CurvatureEstimate | None, note: str = "") -> None:
        """The curvature bound's line and label (or why there is none)."""
        self.plot.show_curvature(estimate)
        if estimate is not None and estimate.applies and estimate.lr_bound is not None:
            low, high = self.plot.lr_range_shown
            if not low <= estimate.lr_bound <= high:
                note = note or "off the plot's LR range"
        self.controls.show_curvature(estimate, note)

    # -- a session's state, drawn (main thread) --------------------------------------------
    def draw_session(self, session: SweepSession, lr: float | None, *, redraw: bool) -> None:
        """The shown result, its suggestions, the kept results and the selection.

        ``redraw=False`` keeps a single run's curves when the sweep thread drew them with the
        current smoothing already.
        """
        shown = session.shown()
        if shown is not None:
            self.show_result(shown, redraw=redraw)
        self.draw_kept(session)
        self.show_selection(lr, session.shown_curve())

    def draw_kept(self, session: SweepSession) -> None:
        """The kept results (all but the primary one, drawn as the main curve), each as the
        curve its rules read (a repeated one's median fit in a faint band); when no sweep runs,
        the x range fits them all."""
        primary = session.loaded
        bands = {
            label: result.band()
            for label, result in session.comparison.items()
            if result is not primary
        }
        self.plot.show_kept(bands, fit_y=not session.sweeping)
        self.controls.set_kept(len(session.comparison))
        if not session.sweeping:
            self.plot.set_lr_range(*self.x_range(session, with_result=True))
            if session.curvature is not None:
                self.show_curvature(session.curvature)  # its label's side depends on the x range

    def x_range(self, session: SweepSession, *, with_result: bool) -> tuple[float, float]:
        """The sweep's LR range, widened to the kept results (and the shown result)."""
        primary = session.result if with_result else None
        return x_range(session.settings, primary, *session.comparison.results)

    def set_idle(self, session: SweepSession) -> None:
        """Controls for a session between sweeps: Run needs an engine, Keep a result."""
        result = session.result
        self.controls.set_running(
            False, can_run=session.finder is not None, can_keep=bool(result and result.has_data)
        )

    def sweep_starting(self, session: SweepSession, lr: float | None) -> None:
        """Controls for a running sweep; the x range of its settings; no suggestions."""
        self.controls.set_running(True)
        self.plot.set_lr_range(*self.x_range(session, with_result=False))
        self.plot.hide_suggestions()
        self.controls.show_spreads({})
        self.show_selection(lr, session.shown_curve())

    def show_initial(self, session: SweepSession, lr: float | None, *, autostart: bool) -> None:
        """A loaded result drawn with its status; else what starts the sweep."""
        result = session.result
        if result is not None:
            self.draw_session(session, lr, redraw=True)
            failed = not result.is_repeated and result.error is not None
            self.status(f"saved sweep: {result.describe_end()}", error=failed)
        elif autostart:
            self.status("ready: the sweep starts when the widget is displayed")
        else:
            self.status("ready: press Run to start the sweep")


def status_of(result: SweepResult | None, error: BaseException | None) -> tuple[str, bool]:
    """The status line of a finished sweep, and whether it reports an error.

    >>> done = RangeTestResult([1e-3], [1.0], stop_reason=StopReason.STOPPED,
    ...                        stop_detail="stopped by the caller before step 1")
    >>> status_of(done, None)
    ('stopped by the caller before step 1', False)
    """
    if result is not None and result.is_repeated:
        if error is not None:
            return f"error in run {len(result.runs) + 1}: {type(error).__name__}: {error}", True
        return result.describe_end(), False
    if error is not None and (result is None or not result.runs[0].stop_detail):
        return f"error: {type(error).__name__}: {error}", True
    if result is None:
        return "the sweep ended without a result", True
    return result.describe_end(), error is not None


def done_text(result: SweepResult | None, error: BaseException | None, seconds: float) -> str:
    """The progress line once a sweep has ended: ``"done: 60 steps in 3 s"``, or the stop
    reason instead of ``done`` (``"diverged: 41 steps in 2 s"``); repeated runs count runs too.

    >>> done_text(RangeTestResult([1e-3, 1e-2], [1.0, 0.5]), None, 0.25)
    'done: 2 steps in 0.2 s'
    """
    # Short sweeps are common (tests, demos): tenths of a second say more than "0 s".
    took = f"{seconds:.1f} s" if seconds < 10 else format_seconds(seconds)
    if result is None:
        return f"error after {took}" if error is not None else f"ended after {took}"
    head = "error" if error is not None and result.is_repeated else result.outcome
    head = "done" if head == StopReason.COMPLETED.value else head
    runs = ""
    if result.is_repeated:
        runs = f"{len(result.runs)} run{'' if len(result.runs) == 1 else 's'}, "
    return f"{head}: {runs}{result.total_steps} steps in {took}"
