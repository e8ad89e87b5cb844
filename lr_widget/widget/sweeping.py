"""The half of :class:`~lr_widget.widget.LRWidget` that runs a sweep: one run or several.

Everything here but :meth:`SweepHalf._finish_sweep` runs in the sweep thread and touches only
what that thread owns while sweeping (the curves, the noise band, the y range, progress and
status); work for the main thread is posted to it. Before the first sweep, a widget built with
``curvature=True`` estimates the curvature bound in the same thread (the estimate restores the
model itself), so the cell returns at once for that too.

A repeated sweep (``repeats=k``) runs :class:`~lr_widget.repeats.RepeatedSweep`: the current
run's curve draws live as for a single sweep, and after each run the band of the finished runs
is redrawn (its ``on_run_done``), so it grows run by run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from lr_widget.compare import AnyResult
from lr_widget.curvature import CurvatureEstimate, estimate_curvature
from lr_widget.engine import LRFinder, StepCallback, StepEvent
from lr_widget.repeats import RepeatedRangeTest, RepeatedSweep
from lr_widget.result import RangeTestResult
from lr_widget.spread import Bump
from lr_widget.widget.controls import Controls
from lr_widget.widget.plot import Curves, LossPlot
from lr_widget.widget.runner import MainThreadQueue
from lr_widget.widget.support import done_text, set_beta, status_of

__all__ = ["SweepHalf", "real_bumps"]


def real_bumps(result: RepeatedRangeTest) -> list[Bump]:
    """The rises of the median curve that are larger than the noise (``Bump.significant``)."""
    try:
        return [bump for bump in result.bumps() if bump.significant]
    except ValueError:  # a degenerate band (e.g. hand-made runs): nothing to judge
        return []


class SweepHalf:
    """Mixin of :class:`~lr_widget.widget.LRWidget`: the sweep thread's side of a sweep."""

    # Set by LRWidget.__init__.
    finder: LRFinder | None
    plot: LossPlot
    controls: Controls
    _repeated: RepeatedSweep | None
    _main: MainThreadQueue
    _beta: float
    _drawn_beta: float | None
    _sweeping: bool
    _closed: bool
    _error: BaseException | None
    _result_before_run: RangeTestResult | None
    _curvature_options: dict[str, Any] | None
    _curvature_tried: bool
    _curvature_inputs: tuple[Any, Any]  # (loss_fn, step_fn) as given to the widget
    _sweep_started_at: float

    # Provided by LRWidget.
    _with_optimizer: Callable[[str], str]
    _after_sweep: Callable[[AnyResult | None], None]
    show_curvature: Callable[[CurvatureEstimate | None], None]

    # -- sweep thread -----------------------------------------------------------------------
    def _run_sweep(self, callback: StepCallback, stop_event: threading.Event) -> AnyResult:
        finder = self.finder
        assert finder is not None
        self._estimate_curvature(finder)
        if self._repeated is not None:
            return self._repeated.run(callback, stop_event, on_run_done=self._on_run_done)
        return finder.run(callback=callback, stop_event=stop_event)

    def _estimate_curvature(self, finder: LRFinder) -> None:
        """Once per widget, before its first sweep: every sweep restores the weights, so the
        bound of the starting weights holds for all of them."""
        if self._curvature_options is None or self._curvature_tried:
            return
        self._curvature_tried = True
        self.controls.show_status(self._with_optimizer("estimating the curvature…"))
        loss_fn, step_fn = self._curvature_inputs
        try:
            estimate = estimate_curvature(
                finder.model,
                finder.train_data,
                loss_fn,
                finder.optimizer,
                step_fn=step_fn,
                **self._curvature_options,
            )
        except Exception as error:  # the sweep is still worth running: say why, go on
            note = f"curvature estimate failed: {type(error).__name__}: {error}"
            self._main.post(lambda: self.controls.show_curvature(None, note))
        else:
            self._main.post(lambda: self.show_curvature(estimate))
        self.controls.show_status(self._with_optimizer("running…"))

    def _on_sweep_start(self) -> None:
        assert self.finder is not None
        self._sweep_started_at = time.perf_counter()
        self.controls.reset_progress(self.finder.settings.num_steps)
        self.controls.show_status(self._with_optimizer("running…"))
        self.plot.draw_band(None)
        self.plot.draw_curves(Curves.of(RangeTestResult(lrs=[], losses=[]), self._beta))

    def _on_sweep_progress(self, event: StepEvent | None) -> None:
        result = self._sweep_result()
        if result is not None:
            beta = self._beta
            self.plot.draw_curves(Curves.of(result, beta))
            self._drawn_beta = beta
        if event is not None:
            self.controls.show_progress(event)

    def _on_run_done(self, partial: RepeatedRangeTest) -> None:
        """After each run of a repeated sweep: redraw the band of the runs so far."""
        shown = partial.with_beta(self._beta)
        self.plot.draw_band(shown.band(), real_bumps(shown), len(shown.runs))

    def _on_sweep_finish(self, error: BaseException | None) -> None:
        self._error = error
        try:
            result = self._finished_result()
            text, failed = status_of(result, error)
            self.controls.show_status(self._with_optimizer(text), error=failed)
            seconds = time.perf_counter() - self._sweep_started_at
            self.controls.show_done(done_text(result, error, seconds))
        finally:
            self._main.post(self._finish_sweep)  # last: the main thread owns everything after

    def _sweep_result(self) -> RangeTestResult | None:
        """The current run's result, once the engine has made it."""
        result = self.finder.result if self.finder is not None else None
        return None if result is self._result_before_run else result

    def _finished_result(self) -> AnyResult | None:
        """What the sweep made: the repeated result, or the single run's."""
        if self._repeated is not None:
            return self._repeated.result
        return self._sweep_result()

    # -- main thread ------------------------------------------------------------------------
    def _finish_sweep(self) -> None:
        """Main thread: the sweep thread is done with its widgets; show the end of the sweep."""
        self._sweeping = False
        result = self._finished_result()
        if result is not None:
            set_beta(result, self._beta)
            if isinstance(result, RepeatedRangeTest) or self._drawn_beta != self._beta:
                self._redraw_result(result)
        self._after_sweep(result)

    def _redraw_result(self, result: AnyResult) -> None:
        """Draw ``result`` as the main curve: a single run's lines, or a band and its median
        (a repeated result without a finished run leaves the live run's curve as it is)."""
        if isinstance(result, RepeatedRangeTest):
            if result.runs:
                band = result.band()
                self.plot.clear_curves()
                self.plot.draw_band(band, real_bumps(result), len(result.runs))
                self.plot.draw_points(band.lrs, band.median)
            return
        self.plot.draw_band(None)
        self.plot.draw_curves(Curves.of(result, self._beta))
        self._drawn_beta = self._beta
