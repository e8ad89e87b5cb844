"""The widget's state and engine, without any widget: a sweep session.

A :class:`SweepSession` owns the engine (an :class:`~lr_widget.engine.sweep.LRFinder`, or with
``repeats`` a :class:`~lr_widget.engine.repeated_sweep.RepeatedSweep`) or a loaded result, runs
sweeps in a background thread (:class:`~.runner.SweepRunner`), holds the kept results
(:class:`~lr_widget.results.compare.Comparison`) and the curvature estimate, and derives what is
shown: the result re-smoothed with the current ``beta`` (a new object: results are never changed)
and its suggestions, spreads and real bumps, computed once per shown result. It tells a
:class:`SweepView` what happens, from the thread it happens in, and never imports a widget
library, so everything here is testable without a browser or a widget.

Threading: the sweep thread calls the view's hooks; everything else (``start``, ``stop``,
``beta``, ``shown``, kept results) belongs to the main thread, and the sweep thread posts work for
it (the end of a sweep, the curvature estimate) through :class:`~.runner.MainThreadQueue`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from lr_widget.curves.arguments import require_lr
from lr_widget.curves.axes import nearest_index
from lr_widget.diagnostics.confirm import confirm_with
from lr_widget.diagnostics.curvature import estimate_curvature
from lr_widget.engine.recording import StepCallback, StepEvent
from lr_widget.engine.runner import RangeTestRunner
from lr_widget.engine.sweep import LRFinder
from lr_widget.results.compare import Comparison
from lr_widget.results.confirmation import (
    CONFIRM_RULE,
    Confirmation,
    check_confirm_options,
    confirm_centre,
)
from lr_widget.results.curvature import CurvatureEstimate
from lr_widget.results.protocol import SweepResult
from lr_widget.results.range_test import RangeTestResult
from lr_widget.results.settings import SweepSettings
from lr_widget.results.spread import Bump, SuggestionSpread
from lr_widget.suggestions.curve import Suggestion
from lr_widget.widget.curves import fit_where_defined
from lr_widget.widget.probes import ConfirmDone, ProbeJob
from lr_widget.widget.runner import MainThreadQueue, SweepRunner

FloatArray = NDArray[np.float64]


class SweepView(Protocol):
    """What a session tells whoever draws a sweep, always in the sweep thread."""

    def sweep_started(self, num_steps: int) -> None:
        """A sweep begins (after the curvature estimate, if any)."""

    def curvature_running(self, running: bool) -> None:
        """The curvature estimate starts (``True``) or ends (``False``)."""

    def sweep_progress(
        self, run: RangeTestResult | None, event: StepEvent | None, beta: float
    ) -> None:
        """The current run so far (to draw smoothed with ``beta``), at most a few times a
        second and once at the end."""

    def run_finished(self, partial: SweepResult, beta: float) -> None:
        """A run ended; ``partial`` holds the runs so far (a single sweep's only run too)."""

    def sweep_finished(
        self, result: SweepResult | None, error: BaseException | None, seconds: float
    ) -> None:
        """The sweep ended (the engine has restored the state)."""


@dataclass(frozen=True)
class Shown:
    """A result as shown: re-smoothed, with everything derived from it computed once."""

    result: SweepResult
    suggestions: dict[str, Suggestion] = field(default_factory=dict)
    spreads: dict[str, SuggestionSpread] = field(default_factory=dict)
    bumps: list[Bump] = field(default_factory=list)

    @classmethod
    def of(cls, result: SweepResult, beta: float, train_steps: int | None = None) -> Shown:
        """``result`` smoothed with ``beta``, its suggestions for ``train_steps`` of training,
        spreads and real bumps."""
        shown = result if result.beta == beta else result.with_beta(beta)
        if shown.train_steps != train_steps:
            shown = shown.with_train_steps(train_steps)
        if not shown.has_data:
            return cls(shown)
        try:
            return cls(shown, shown.suggestions(), shown.spreads(), shown.real_bumps())
        except ValueError:  # a curve the rules reject (e.g. a hand-made result): no markers
            return cls(shown)


@dataclass(frozen=True)
class MainCurve:
    """The curve drawn bold: its LRs, its values, and where each value comes from the lag-free
    fit the rules read (``from_fit``) rather than the smoothed loss (while sweeping, or past the
    fit's end at the blow-up)."""

    lrs: FloatArray
    values: FloatArray
    from_fit: NDArray[np.bool_]

    def at(self, lr: float) -> tuple[float, bool]:
        """The value at the recorded LR nearest to ``lr``, and whether it is the fit's."""
        index = nearest_index(self.lrs, lr)
        return float(self.values[index]), bool(self.from_fit[index])


class SweepSession:
    """One widget's sweeps and results; see the module docstring.

    Parameters
    ----------
    engine
        What runs the sweeps (:func:`~lr_widget.engine.runner.make_runner`), or ``None`` to show
        ``loaded`` only.
    loaded
        A result to show before any sweep (the only one, without an engine).
    curvature_options
        ``estimate_curvature`` options to estimate the curvature once, before the first sweep
        (``None``: never).
    curvature_inputs
        ``(loss_fn, step_fn)`` as given to the widget, for the curvature estimate.
    update_interval_s
        Least time between two progress reports during a sweep.
    """

    def __init__(
        self,
        engine: RangeTestRunner | None,
        loaded: SweepResult | None,
        *,
        curvature_options: Mapping[str, Any] | None = None,
        curvature_inputs: tuple[Any, Any] = (None, None),
        update_interval_s: float = 0.15,
    ) -> None:
        self.engine = engine
        self.finder = engine.finder if engine is not None else None
        self.loaded = loaded
        self.view: SweepView | None = None
        self._on_ended: Callable[[], None] = _nothing
        self._on_curvature: Callable[[CurvatureEstimate | None, str], None] = _nothing
        self.comparison = Comparison()
        self._curvature: CurvatureEstimate | None = None
        self._error: BaseException | None = None
        self.main = MainThreadQueue()
        self._beta = float(self.finder.settings.beta if self.finder is not None else _beta(loaded))
        self._train_steps: int | None = (
            self.finder.settings.train_steps
            if self.finder is not None
            else None
            if loaded is None
            else loaded.train_steps
        )
        self._curvature_options = None if curvature_options is None else dict(curvature_options)
        self._curvature_inputs = curvature_inputs
        self._sweeping = False
        self._run_before: RangeTestResult | None = None
        self._shown: tuple[tuple[int, float, int, int | None], Shown] | None = None
        self._sweep_started_at = 0.0
        self._confirmation: Confirmation | None = None
        self._probes = ProbeJob(self.main)
        self._runner = SweepRunner(
            self._sweep,
            on_start=self._on_start,
            on_progress=self._on_progress,
            on_finish=self._on_finish,
            interval_s=update_interval_s,
        )

    def attach(
        self,
        view: SweepView,
        *,
        on_ended: Callable[[], None],
        on_curvature: Callable[[CurvatureEstimate | None, str], None],
    ) -> None:
        """Who hears of the sweeps: ``view`` draws them (in the sweep thread); ``on_ended`` runs
        in the main thread once a sweep has ended and the sweep thread is done with the view;
        ``on_curvature`` gets the curvature estimate, or ``None`` and why it failed."""
        self.view, self._on_ended, self._on_curvature = view, on_ended, on_curvature

    @property
    def thread_alive(self) -> bool:
        """Whether a sweep is still running in the sweep thread."""
        return self._runner.alive

    # -- what there is ----------------------------------------------------------------------
    @property
    def result(self) -> SweepResult | None:
        """The latest result (growing while a sweep runs), else the loaded one."""
        if self.engine is not None and self.engine.result is not None:
            return self.engine.result
        return self.loaded

    @property
    def live_run(self) -> RangeTestResult | None:
        """The run the engine is making (or made last), once the current sweep has begun."""
        run = self.finder.result if self.finder is not None else None
        return None if run is self._run_before else run

    @property
    def sweeping(self) -> bool:
        """Whether a sweep is in progress (from :meth:`start` until its end is shown)."""
        self._settle()
        return self._sweeping

    @property
    def error(self) -> BaseException | None:
        """The exception that ended the latest sweep, or ``None``."""
        self._settle()
        return self._error

    @property
    def confirmation(self) -> Confirmation | None:
        """What the latest :meth:`confirm` found (``None`` before it ends)."""
        self._settle()
        return self._confirmation

    @property
    def curvature(self) -> CurvatureEstimate | None:
        """The curvature estimate drawn, if any."""
        self._settle()
        return self._curvature

    def show_curvature(self, estimate: CurvatureEstimate | None, note: str = "") -> None:
        """Keep ``estimate`` (``None`` removes it) and tell whoever draws it."""
        self._settle()
        self._curvature = estimate
        self._on_curvature(estimate, note)

    @property
    def train_steps(self) -> int | None:
        """The length of the training the suggestions are for (``None``: assumed); changing it
        re-reads the suggestions, no new sweep."""
        return self._train_steps

    @train_steps.setter
    def train_steps(self, value: int | None) -> None:
        self._settle()
        self._train_steps = value

    def clear_kept(self) -> None:
        """Forget every kept result."""
        self._settle()
        self.comparison.clear()

    def _settle(self) -> None:
        """Run the work the sweep thread posted for the main thread (its end, the curvature
        estimate, the probes' verdict) before the main thread reads or changes the state: the
        kernel's loop runs it too, but not while a cell blocks, nor in scripts without a loop.
        A no-op in any other thread."""
        self.main.run_pending()

    @property
    def settings(self) -> SweepSettings:
        """The engine's sweep settings, or those the loaded result was made with."""
        if self.finder is not None:
            return self.finder.settings
        return SweepSettings() if self.loaded is None else self.loaded.sweep_settings()

    @property
    def beta(self) -> float:
        """The smoothing shown; the next sweep is configured with it."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        self._settle()
        self._beta = float(value)

    def shown(self) -> Shown | None:
        """The latest result as shown (re-smoothed, suggestions...), computed once per result
        and ``beta``; while a sweep runs, the live result's without caching."""
        result = self.result
        if result is None:
            return None
        if self._sweeping:
            return Shown(result.with_beta(self._beta))
        key = (id(result), self._beta, result.total_steps, self._train_steps)
        if self._shown is None or self._shown[0] != key:
            self._shown = (key, Shown.of(result, self._beta, self._train_steps))
        return self._shown[1]

    def settled(self) -> Shown:
        """What is shown once no sweep runs: :meth:`shown`, or nothing (no suggestions) while a
        sweep runs or before any result."""
        self._settle()
        shown = None if self._sweeping else self.shown()
        return Shown(RangeTestResult([], [])) if shown is None else shown

    def suggested_lr(self, rule: str) -> float:
        """``rule``'s LR in :meth:`settled`; ``ValueError`` (with the reason) without one."""
        return _lr_to_pick(self.settled().suggestions.get(rule), rule)

    def confirm_centre_lr(self) -> float:
        """The LR a confirmation centres on in :meth:`settled`
        (:func:`~lr_widget.results.confirmation.confirm_centre`); ``ValueError`` (with the
        reason) without one."""
        return _lr_to_pick(confirm_centre(self.settled().suggestions), CONFIRM_RULE)

    def shown_curve(self) -> MainCurve | None:
        """The main curve, the one drawn bold, snapped to and reported on a click: the
        current run's smoothed loss while sweeping (or while no run of a repeated sweep has
        finished), else the shown result's lag-free fit, the curve its rules read (its smoothed
        loss past the fit's end, the blow-up)."""
        self._settle()
        result: SweepResult | None = self.live_run if self._sweeping else self.result
        if result is not None and not result.runs:
            result = self.live_run
        if result is None:
            return None
        lrs, smoothed = result.with_beta(self._beta).shown_curve()
        fit = None if self._sweeping else result.lag_free_curve
        if fit is None or fit.size != smoothed.size:
            return MainCurve(lrs, smoothed, np.zeros(lrs.size, dtype=bool))
        return MainCurve(lrs, fit_where_defined(fit, smoothed), np.isfinite(fit))

    def recorded_lrs(self) -> FloatArray:
        """The LRs a selection may snap to: those of :meth:`shown_curve`."""
        shown = self.shown_curve()
        return np.zeros(0) if shown is None else shown.lrs

    # -- control (main thread) --------------------------------------------------------------
    def start(self, changes: Mapping[str, Any]) -> bool:
        """Start a sweep with the settings changed by ``changes``; ``False`` while one runs.

        Raises ``RuntimeError`` without an engine, ``TypeError``/``ValueError`` for invalid
        settings (before anything starts).
        """
        self._settle()
        if self.finder is None:
            raise RuntimeError(
                "this LRWidget shows a saved result and has no model to sweep; build one with "
                "LRWidget(model, train_data, ...) to run"
            )
        if self._sweeping or self._probes.running:
            return False
        if self.view is None:
            raise RuntimeError("attach() a view before starting a sweep")
        self.finder.configure(**{**changes, "beta": self._beta, "train_steps": self._train_steps})
        self._runner.join()  # the previous sweep thread has already posted its last work
        self._sweeping, self._error = True, None
        self._run_before = self.finder.result
        self._runner.start()
        return True

    @property
    def confirming(self) -> bool:
        """Whether confirmation probes are training (from :meth:`confirm` until they end)."""
        return self._probes.running

    def confirm(self, lr: float, on_done: ConfirmDone, **options: Any) -> bool:
        """Train short probes around ``lr`` in a background thread
        (:func:`~lr_widget.diagnostics.confirm.confirm_with` with ``options``), keep the outcome in
        :attr:`confirmation` and pass it to ``on_done`` in the main thread; ``False`` while a
        sweep or other probes run. ``RuntimeError`` without a model."""
        self._settle()
        if self.finder is None:
            raise RuntimeError("this LRWidget shows a saved result and has no model to train")
        lr = require_lr("lr", lr)
        options = check_confirm_options(options)  # in this thread: errors reach the caller
        if self._sweeping or self._probes.running:
            return False
        finder = self.finder

        def work() -> Confirmation:
            return confirm_with(finder, lr, **options)

        def done(confirmation: Confirmation | None, error: BaseException | None) -> None:
            self._confirmation = confirmation
            on_done(confirmation, error)

        self._confirmation = None
        return self._probes.start(work, done)

    def join_probes(self, timeout: float | None = None) -> bool:
        """Wait for the confirmation probes; ``True`` once they have ended (or none started)."""
        return self._probes.join(timeout)

    def keep(self, label: str | None = None, result: SweepResult | None = None) -> str:
        """Copy the current result (or ``result``) into :attr:`comparison` under ``label``;
        return the label.

        ``RuntimeError`` while a sweep runs; ``ValueError`` without a result to keep or if
        ``label`` is already used.
        """
        self._settle()
        if self._sweeping:
            raise RuntimeError("a sweep is running: keep its result once it ends (w.wait())")
        if result is None:
            result = self.result
        if result is None or not result.has_data:
            raise ValueError("there is no result to keep yet: run a sweep first")
        return self.comparison.add(result.copy(), label)

    def stop(self) -> None:
        """Stop the sweep after its current step (and, repeated, start no further run)."""
        self._runner.stop()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the sweep; ``True`` once it has ended (or none started)."""
        return self._runner.join(timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Stop any sweep and wait for it (the state is restored) at most ``timeout`` seconds;
        its thread goes back to the pool of idle sweep threads. ``False`` if the sweep is still
        inside a slow batch: it stops and restores when that batch returns."""
        ended = self._runner.shutdown(timeout)
        self._probes.join(timeout)  # short; it restores the state after every probe
        self._settle()
        return ended

    def _view(self) -> SweepView:
        assert self.view is not None  # start() checks
        return self.view

    # -- sweep thread -----------------------------------------------------------------------
    def _sweep(self, callback: StepCallback, stop_event: threading.Event) -> SweepResult:
        assert self.finder is not None
        self._estimate_curvature(self.finder)
        assert self.engine is not None
        return self.engine.run(callback, stop_event, on_run_done=self._on_run_done)

    def _estimate_curvature(self, finder: LRFinder) -> None:
        """Once per session, before its first sweep: every sweep restores the weights, so the
        bound of the starting weights holds for all of them."""
        options, self._curvature_options = self._curvature_options, None
        if options is None:
            return
        self._view().curvature_running(True)
        loss_fn, step_fn = self._curvature_inputs
        try:
            estimate = estimate_curvature(
                finder.model, finder.train_data, loss_fn, finder.optimizer, step_fn=step_fn,
                **options,
            )  # fmt: skip
        except Exception as error:  # the sweep is still worth running: say why, go on
            note = f"curvature estimate failed: {type(error).__name__}: {error}"
            self.main.post(lambda: self._curvature_done(None, note))
        else:
            self.main.post(lambda: self._curvature_done(estimate, ""))
        self._view().curvature_running(False)

    def _on_start(self) -> None:
        assert self.finder is not None
        self._sweep_started_at = time.perf_counter()
        self._view().sweep_started(self.finder.settings.num_steps)

    def _on_progress(self, event: StepEvent | None) -> None:
        self._view().sweep_progress(self.live_run, event, self._beta)

    def _on_run_done(self, partial: SweepResult) -> None:
        self._view().run_finished(partial, self._beta)

    def _on_finish(self, error: BaseException | None) -> None:
        self._error = error
        try:
            result = self.engine.result if self.engine is not None else None
            seconds = time.perf_counter() - self._sweep_started_at
            self._view().sweep_finished(result, error, seconds)
        finally:
            self.main.post(self._ended)  # last: the main thread owns everything after

    # -- main thread ------------------------------------------------------------------------
    def _ended(self) -> None:
        self._sweeping = False
        self._on_ended()

    def _curvature_done(self, estimate: CurvatureEstimate | None, note: str) -> None:
        self._curvature = estimate
        self._on_curvature(estimate, note)


def _nothing(*_args: Any) -> None:
    pass


def _beta(result: SweepResult | None) -> float:
    return SweepSettings().beta if result is None else result.beta


def _lr_to_pick(suggestion: Suggestion | None, rule: str) -> float:
    """``suggestion``'s LR; ``ValueError`` naming ``rule`` and the reason when it has none."""
    if suggestion is None or suggestion.lr is None:
        reason = "no sweep result" if suggestion is None else suggestion.reason
        raise ValueError(f"the {rule} rule gives no LR to pick: {reason}")
    return float(suggestion.lr)
